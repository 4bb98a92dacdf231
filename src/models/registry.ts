/**
 * The `models` gateway module: builds the inference state of each config
 * beside the running one (a model that fails to load is reported with its
 * path and the runtime's message, and does not stop the gateway), serves
 * every model as the function `fn/model/<name>` on the bus, and adds
 * `GET /models` to the admin API.
 *
 * @module
 */

import type { Hono } from "hono";
import type { Bus, Subscription } from "../bus/bus.ts";
import type { ModelsSlice } from "./config.ts";
import { serveFunction } from "../functions/call.ts";
import type { Change, GatewayModule, PrepareContext } from "../module.ts";
import type { MetricsRegistry } from "../observability/metrics.ts";
import { type ModelMetrics, modelMetrics } from "./metrics.ts";
import { ModelSet, type OcrAnswer } from "./model_set.ts";
import type { InferAnswer } from "./served_model.ts";
import type { OcrOptions } from "./ocr/types.ts";

/**
 * What a call of a model carries, over HTTP and as `fn/model/<name>`:
 * `outputEncoding: "base64"` answers each output's data as base64 bytes.
 */
export interface InferRequest {
  inputs?: unknown;
  outputEncoding?: "json" | "base64";
}

/**
 * The model registry.
 *
 * @example
 * ```ts
 * import { Bus } from "../bus/bus.ts";
 * import { MetricsRegistry } from "../observability/metrics.ts";
 * import { ModelRegistry } from "./registry.ts";
 * const registry = new ModelRegistry(new Bus(), new MetricsRegistry());
 * // const change = await registry.prepare(config); await change.commit();
 * // await registry.infer("add", { a: {...}, b: {...} });
 * await registry.stop();
 * ```
 */
export class ModelRegistry implements GatewayModule<ModelsSlice> {
  readonly name = "models";
  readonly sections = ["models", "inference", "ocr"] as const;
  readonly #metrics: ModelMetrics;
  #current?: { key: string; set: ModelSet; timeout: number };
  #functions: Subscription[] = [];

  constructor(readonly bus: Bus, metrics: MetricsRegistry) {
    this.#metrics = modelMetrics(metrics);
  }

  /** Builds the models of `config` (eager ones loaded) unless they are unchanged. */
  async prepare(config: ModelsSlice, _context: PrepareContext): Promise<Change> {
    const key = JSON.stringify([config.models, config.inference, config.ocr]);
    if (this.#current?.key === key) return { commit() {}, abort() {} };
    const set = new ModelSet(config, this.#metrics);
    await set.loadEager();
    return {
      commit: () => {
        const previous = this.#current;
        this.#current = { key, set, timeout: config.inference.timeout };
        this.#serveFunctions(set);
        if (previous) void previous.set.stop(previous.timeout);
      },
      abort: () => set.stop(0),
    };
  }

  #serveFunctions(set: ModelSet): void {
    for (const subscription of this.#functions) subscription.unsubscribe();
    this.#functions = [...set.models.keys()].map((name) =>
      serveFunction<InferRequest>(
        this.bus,
        "model",
        name,
        (args) => this.infer(name, args?.inputs, args?.outputEncoding === "base64"),
      )
    );
  }

  #set(): ModelSet {
    if (!this.#current) throw new Error("the model registry has not started");
    return this.#current.set;
  }

  /** Whether the serving config has a model named `name`. */
  has(name: string): boolean {
    return this.#current?.set.models.has(name) ?? false;
  }

  /**
   * Runs model `name` on JSON tensors (outputs' data as base64 when
   * `base64`). Throws `UnknownModelError` (404), `TensorError` (400),
   * `ModelUnavailableError` (503), `InferenceError`.
   */
  infer(name: string, inputs: unknown, base64 = false): Promise<InferAnswer> {
    const set = this.#set();
    return set.track(() => set.model(name).infer(inputs, base64));
  }

  /** `ocr.maxImageBytes` of the serving config: the largest image body the OCR route reads. */
  get maxImageBytes(): number {
    return this.#set().maxImageBytes;
  }

  /** Reads a page (PNG or JPEG bytes). Throws `OcrError` (400, 413, 503) and `InferenceError`. */
  ocr(image: Uint8Array, options: OcrOptions & { template?: string }): Promise<OcrAnswer> {
    const set = this.#set();
    return set.track(async () => {
      try {
        const answer = await set.ocr(image, options);
        this.#metrics.ocrPages.labels({ result: "ok" }).inc();
        return answer;
      } catch (error) {
        const status = (error as { status?: number }).status;
        const result = status === 400 || status === 413 ? "rejected" : "error";
        this.#metrics.ocrPages.labels({ result }).inc();
        throw error;
      }
    });
  }

  async stop(): Promise<void> {
    for (const subscription of this.#functions) subscription.unsubscribe();
    this.#functions = [];
    const current = this.#current;
    this.#current = undefined;
    await current?.set.stop(current.timeout);
  }

  status(): unknown {
    const models = [...this.#current?.set.models.values() ?? []].map((m) => m.status());
    return {
      models: models.length,
      loaded: models.filter((m) => m.state === "loaded").length,
      failed: models.filter((m) => m.state === "failed").map((m) => m.name),
    };
  }

  admin(app: Hono): void {
    app.get("/models", (c) =>
      c.json({
        models: [...this.#current?.set.models.values() ?? []].map((m) => m.status()),
        ocr: this.#current?.set.ocrStatus() ?? null,
        inferenceWorkers: this.#current?.set.pool.status() ?? [],
      }));
  }
}
