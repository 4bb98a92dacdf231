/**
 * Everything one config asks of inference: the Worker pool, the served
 * models, and the OCR pipeline's settings. A reload builds a new set beside
 * the running one; the old set is stopped once its in-flight calls are done.
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";
import { GatewayError } from "../errors.ts";
import type { ModelsSlice } from "./config.ts";
import { InferencePool } from "./pool.ts";
import { resolveModelFile } from "./model_path.ts";
import { ServedModel } from "./served_model.ts";
import type { ModelMetrics } from "./metrics.ts";
import type { OcrConfig } from "./config.ts";
import { OcrError, type OcrOptions, type OcrResult, type OcrSettings } from "./ocr/types.ts";
import { pickFields } from "./ocr/templates.ts";

const logger = getLogger(["gateway", "models"]);

/** A page read, with the template's fields when one was asked for. */
export type OcrAnswer = OcrResult & { fields?: Record<string, string | null> };

/**
 * A model name nobody configured: 404.
 *
 * @example
 * ```ts
 * import { UnknownModelError } from "./model_set.ts";
 * new UnknownModelError("nope").status; // 404
 * ```
 */
export class UnknownModelError extends GatewayError {
  constructor(name: string) {
    super(404, "unknown_model", `no model named "${name}" is configured`);
    this.name = "UnknownModelError";
  }
}

/**
 * The inference state of one config.
 *
 * @example
 * ```ts
 * import { ModelSet } from "./model_set.ts";
 * // const set = new ModelSet(config, metrics);
 * // await set.loadEager();
 * // await set.model("add").infer({ ... });
 * // await set.stop();
 * ```
 */
export class ModelSet {
  readonly pool: InferencePool;
  readonly models = new Map<string, ServedModel>();
  readonly #ocr: OcrConfig;
  #ocrSettings?: OcrSettings;
  #ocrProblem?: string;
  #inflight = 0;
  #idle = Promise.withResolvers<void>();

  constructor(config: ModelsSlice, readonly metrics: ModelMetrics) {
    this.pool = new InferencePool(config.inference);
    for (const model of config.models) {
      let file: string | Error;
      try {
        file = resolveModelFile(model.path);
      } catch (error) {
        file = error as Error;
      }
      this.models.set(model.name, new ServedModel(model, file, this.pool, metrics));
    }
    this.#ocr = config.ocr;
    try {
      this.#ocrSettings = {
        detection: resolveModelFile(config.ocr.detection),
        recognition: resolveModelFile(config.ocr.recognition),
        classifier: resolveModelFile(config.ocr.classifier),
        keys: resolveModelFile(config.ocr.keys),
        maxImageBytes: config.ocr.maxImageBytes,
        maxPixels: config.ocr.maxPixels,
        maxSide: config.ocr.maxSide,
        detectionSide: config.ocr.detectionSide,
        boxThreshold: config.ocr.boxThreshold,
        unclip: config.ocr.unclip,
      };
    } catch (error) {
      this.#ocrProblem = `ocr: ${(error as Error).message}`;
    }
  }

  /**
   * Loads every `eager` model, and the OCR sessions when `ocr.load` is
   * eager; failures are kept (and logged), never thrown.
   */
  async loadEager(): Promise<void> {
    const eager = [...this.models.values()].filter((m) => m.config.load === "eager");
    const ocr = this.#ocr.load === "eager" && this.#ocrSettings
      ? this.pool.loadOcr(this.#ocr.threads, this.#ocrSettings).catch((error: Error) => {
        this.#ocrProblem = `ocr: ${error.message}`;
        logger.error("the OCR models failed to load: {error}", { error: error.message });
      })
      : undefined;
    await Promise.all([...eager.map((model) => model.load().catch(() => {})), ocr]);
  }

  /** The served model `name`; throws {@link UnknownModelError}. */
  model(name: string): ServedModel {
    const model = this.models.get(name);
    if (!model) throw new UnknownModelError(name);
    return model;
  }

  /** Counts a call in flight, so that {@link stop} waits for it. */
  async track<T>(work: () => Promise<T>): Promise<T> {
    if (this.#inflight++ === 0) this.#idle = Promise.withResolvers<void>();
    try {
      return await work();
    } finally {
      if (--this.#inflight === 0) this.#idle.resolve();
    }
  }

  /**
   * Reads a page: size limit checked here, the pipeline in a Worker, the
   * template's fields picked from the lines.
   */
  async ocr(image: Uint8Array, options: OcrOptions & { template?: string }): Promise<OcrAnswer> {
    if (!this.#ocrSettings) {
      throw new OcrError(503, "ocr_unavailable", `OCR is not available: ${this.#ocrProblem}`);
    }
    const template = options.template === undefined
      ? undefined
      : this.#ocr.templates[options.template];
    if (options.template !== undefined && !template) {
      const known = Object.keys(this.#ocr.templates);
      throw new OcrError(
        400,
        "unknown_template",
        `no OCR template "${options.template}" (configured: ${known.join(", ") || "none"})`,
      );
    }
    if (image.length > this.#ocr.maxImageBytes) {
      throw new OcrError(
        413,
        "image_too_large",
        `the image is ${image.length} bytes, more than ocr.maxImageBytes (${this.#ocr.maxImageBytes})`,
      );
    }
    const started = performance.now();
    const result: OcrAnswer = await this.pool.ocr(this.#ocr.threads, this.#ocrSettings, image, {
      classify: options.classify ?? false,
    });
    this.metrics.ocrDuration.labels({}).observe((performance.now() - started) / 1000);
    if (template) result.fields = pickFields(result.lines, template);
    return result;
  }

  /** `ocr.maxImageBytes`: the largest image body the OCR route reads. */
  get maxImageBytes(): number {
    return this.#ocr.maxImageBytes;
  }

  /** What `GET /models` shows about OCR. */
  ocrStatus(): Record<string, unknown> {
    return this.#ocrProblem
      ? { state: "failed", error: this.#ocrProblem }
      : { state: "available", ...this.#ocrSettings, templates: Object.keys(this.#ocr.templates) };
  }

  /** Waits for the calls in flight (at most the inference timeout), then terminates the Workers. */
  async stop(timeout: number): Promise<void> {
    if (this.#inflight > 0) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([
        this.#idle.promise,
        new Promise((resolve) => timer = setTimeout(resolve, timeout)),
      ]);
      clearTimeout(timer);
    }
    for (const model of this.models.values()) model.stop();
    this.pool.stop();
  }
}
