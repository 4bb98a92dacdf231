/**
 * One configured model as the gateway serves it: its session in the pool
 * (loaded at start or on first use), the checks of its inputs, its result
 * cache and batcher, and the numbers `GET /models` and the metrics show (the
 * shared supervision status: every run counts, failed ones as errors). A
 * session that fails to load is tried again with backoff (a
 * {@link Restarter}) until it gives up; meanwhile the model answers 503.
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";
import type { ModelConfig } from "./config.ts";
import type { LoadedModel } from "./protocol.ts";
import type { InferencePool } from "./pool.ts";
import { Batcher } from "./batcher.ts";
import { hashInputs, LruCache } from "./cache.ts";
import { type JsonTensor, parseInputs, type Tensor, tensorToJson } from "./tensor.ts";
import type { ModelMetrics } from "./metrics.ts";
import { Restarter } from "../supervision/restart.ts";
import { CallStats, type PartStatus } from "../supervision/stats.ts";
import { GatewayError } from "../errors.ts";

const logger = getLogger(["gateway", "models"]);

/** A model's answer: its outputs as JSON tensors. */
export interface InferAnswer {
  outputs: Record<string, JsonTensor>;
}

/** What `GET /models` shows about one model: the shared status shape and the model's own. */
export interface ModelStatus extends PartStatus {
  name: string;
  description?: string;
  file: string;
  state: "loaded" | "loading" | "not loaded" | "failed";
  error?: string;
  inputs?: LoadedModel["inputs"];
  outputs?: LoadedModel["outputs"];
  loadMs?: number;
}

/**
 * A served model.
 *
 * @example
 * ```ts
 * import { ServedModel } from "./served_model.ts";
 * // const model = new ServedModel(config, "/abs/add.onnx", pool, metrics);
 * // await model.load();
 * // await model.infer({ a: {...}, b: {...} }); // { outputs: { sum: { type, dims, data } } }
 * ```
 */
export class ServedModel {
  #loaded?: Promise<LoadedModel>;
  #signature?: LoadedModel;
  #error?: string;
  /** Set when the path cannot be resolved: a config error, not tried again. */
  readonly #pathError?: string;
  #inFlight = 0;
  readonly #restarter: Restarter;
  readonly stats: CallStats;
  readonly #cache?: LruCache<Record<string, Tensor>>;
  readonly #batcher?: Batcher;

  readonly file: string;

  /** `file` is the model's absolute file, or why its path could not be resolved. */
  constructor(
    readonly config: ModelConfig,
    file: string | Error,
    readonly pool: InferencePool,
    readonly metrics: ModelMetrics,
  ) {
    this.file = typeof file === "string" ? file : config.path;
    if (file instanceof Error) this.#error = this.#pathError = `${config.path}: ${file.message}`;
    this.stats = new CallStats(metrics.supervision.of("model", config.name));
    this.#restarter = new Restarter(() => {
      this.#loaded = undefined;
      this.stats.restarted(this.#error ?? "load again");
      this.load().catch(() => {/* kept in the status, tried again or failed */});
    });
    if (config.cacheSize > 0) this.#cache = new LruCache(config.cacheSize);
    const batchSizes = metrics.batchSize.labels({ model: config.name });
    if (config.maxBatch > 1) {
      this.#batcher = new Batcher(
        { maxBatch: config.maxBatch, windowMs: config.batchWindowMs },
        (feeds) => pool.run(config.threads, config.name, feeds),
        (size) => batchSizes.observe(size),
      );
    }
  }

  /**
   * Creates the session (once); a failure is kept and reported, not thrown
   * further than the caller, and the load is tried again after a backoff.
   */
  load(): Promise<LoadedModel> {
    this.#loaded ??= (async () => {
      if (this.#pathError) {
        logger.error("model {name} cannot be loaded: {error}", {
          name: this.config.name,
          error: this.#pathError,
        });
        this.stats.problem(this.#pathError);
        throw new ModelUnavailableError(this.config.name, this.#pathError);
      }
      logger.info("loading model {name} from {file}", { name: this.config.name, file: this.file });
      try {
        const loaded = await this.pool.load(this.config.threads, this.config.name, this.file);
        this.#signature = loaded;
        this.#error = undefined;
        this.#restarter.started();
        logger.info("model {name} loaded in {ms} ms: inputs {inputs}", {
          name: this.config.name,
          ms: Math.round(loaded.loadMs),
          inputs: loaded.inputs.map((i) => `${i.name}: ${i.type}[${i.dims}]`).join(", "),
        });
        return loaded;
      } catch (error) {
        this.#error = `${this.file}: ${(error as Error).message}`;
        this.stats.problem(this.#error);
        const next = this.#restarter.crashed(this.#error, 0) === "backoff"
          ? `; trying again in ${this.#restarter.delay} ms`
          : "";
        logger.error("model {name} failed to load: {error}{next}", {
          name: this.config.name,
          error: this.#error,
          next,
        });
        throw new ModelUnavailableError(this.config.name, this.#error);
      }
    })();
    return this.#loaded;
  }

  /**
   * Runs the model on JSON inputs and answers JSON outputs (their data as
   * base64 when `base64`). Throws a
   * `TensorError` (400) when the inputs do not fit the model, a
   * {@link ModelUnavailableError} (503) when it failed to load.
   */
  async infer(inputs: unknown, base64 = false): Promise<InferAnswer> {
    const { inputs: signature } = await this.load();
    const feeds = parseInputs(inputs, signature);
    const labels = { model: this.config.name };
    let key: string | undefined;
    if (this.#cache) {
      key = await hashInputs(feeds);
      const cached = this.#cache.get(key);
      this.metrics.cache.labels({ ...labels, result: cached ? "hit" : "miss" }).inc();
      if (cached) return { outputs: toJson(cached, base64) };
    }
    const started = performance.now();
    let outputs: Record<string, Tensor>;
    this.#inFlight++;
    try {
      // Only a free first dimension can take a batch.
      const batchable = signature.every((i) => typeof i.dims[0] !== "number" || i.dims[0] < 0);
      outputs = this.#batcher && batchable
        ? await this.#batcher.run(feeds)
        : await this.pool.run(this.config.threads, this.config.name, feeds);
    } catch (error) {
      this.stats.record(performance.now() - started, error);
      this.metrics.runs.labels({ ...labels, result: "error" }).inc();
      throw error;
    } finally {
      this.#inFlight--;
    }
    const ms = performance.now() - started;
    this.stats.record(ms);
    this.metrics.runs.labels({ ...labels, result: "ok" }).inc();
    this.metrics.duration.labels(labels).observe(ms / 1000);
    if (key) this.#cache!.set(key, outputs);
    return { outputs: toJson(outputs, base64) };
  }

  /** Stops trying to load again. */
  stop(): void {
    this.#restarter.stop();
  }

  /** What `GET /models` shows. */
  status(): ModelStatus {
    const state = this.#error
      ? "failed"
      : this.#signature
      ? "loaded"
      : this.#loaded
      ? "loading"
      : "not loaded";
    return {
      name: this.config.name,
      ...this.stats.status(state, this.#inFlight, 0),
      state,
      ...(this.config.description ? { description: this.config.description } : {}),
      file: this.file,
      ...(this.#error ? { error: this.#error } : {}),
      ...(this.#signature
        ? {
          inputs: describe(this.#signature.inputs, this.config.inputs),
          outputs: describe(this.#signature.outputs, this.config.outputs),
          loadMs: round(this.#signature.loadMs),
        }
        : {}),
    };
  }
}

/**
 * A model that could not be loaded: answered 503; the path and the
 * runtime's message are its detail, for the log and the admin API.
 *
 * @example
 * ```ts
 * import { ModelUnavailableError } from "./served_model.ts";
 * new ModelUnavailableError("add", "/m/add.onnx: protobuf parsing failed").status; // 503
 * ```
 */
export class ModelUnavailableError extends GatewayError {
  constructor(model: string, reason: string) {
    super(503, "model_unavailable", `model "${model}" is not available`, { detail: { reason } });
    this.name = "ModelUnavailableError";
  }
}

function toJson(outputs: Record<string, Tensor>, base64: boolean): Record<string, JsonTensor> {
  return Object.fromEntries(
    Object.entries(outputs).map(([n, t]) => [n, tensorToJson(t, base64)]),
  );
}

function describe(
  signature: LoadedModel["inputs"],
  notes: ModelConfig["inputs"],
): LoadedModel["inputs"] {
  return signature.map((s) => {
    const description = notes?.[s.name]?.description;
    return description ? { ...s, description } : s;
  });
}

function round(ms: number): number {
  return Math.round(ms * 100) / 100;
}
