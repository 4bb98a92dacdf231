/**
 * A small pool of inference Workers. Workers are grouped by their
 * WebAssembly thread count (onnxruntime-web sets it once per Worker); a model
 * is loaded into every Worker of its group, and each run goes to the least
 * busy one. Requests and replies are matched by id; tensor buffers and image
 * bytes are transferred, not copied.
 *
 * @module
 */

import type { LoadedModel, WorkerInit, WorkerReply, WorkerRequest } from "./protocol.ts";
import type { Tensor } from "./tensor.ts";
import type { OcrOptions, OcrResult, OcrSettings } from "./ocr/types.ts";

/**
 * A failure reported by an inference worker, with the runtime's own type and
 * message (and the HTTP status when the worker knows it, as for bad images).
 *
 * @example
 * ```ts
 * import { InferenceError } from "./pool.ts";
 * new InferenceError("timeout", "no answer within 30000 ms").status; // 500
 * ```
 */
export class InferenceError extends Error {
  constructor(readonly type: string, message: string, readonly status = 500) {
    super(message);
    this.name = "InferenceError";
  }
}

type Pending = { resolve: (value: unknown) => void; reject: (error: Error) => void };
type Request = WorkerRequest extends infer R ? R extends unknown ? Omit<R, "id"> : never : never;

/** One Worker and the requests it has not answered yet. */
class InferenceWorker {
  readonly #worker: Worker;
  readonly #pending = new Map<number, Pending>();
  #nextId = 1;

  constructor(threads: number) {
    this.#worker = new Worker(new URL("./inference_worker.ts", import.meta.url), {
      type: "module",
      name: `inference-${threads}t`,
    });
    this.#worker.postMessage({ threads } satisfies WorkerInit);
    this.#worker.onmessage = (event: MessageEvent<WorkerReply>) => {
      const reply = event.data;
      const pending = this.#pending.get(reply.id);
      if (!pending) return;
      this.#pending.delete(reply.id);
      if (reply.ok) pending.resolve(reply.result);
      else {
        pending.reject(
          new InferenceError(reply.error.type, reply.error.message, reply.error.status),
        );
      }
    };
    this.#worker.onerror = (event) => {
      event.preventDefault();
      this.#failAll(new InferenceError("worker_crashed", `inference worker: ${event.message}`));
    };
  }

  get busy(): number {
    return this.#pending.size;
  }

  call<T>(request: Request, transfer: Transferable[], timeout: number): Promise<T> {
    const id = this.#nextId++;
    const { promise, resolve, reject } = Promise.withResolvers<T>();
    // A run past its time still occupies the Worker: it stays pending (and
    // counted in `busy`) until the Worker's reply arrives, so new runs go elsewhere.
    const timer = setTimeout(() => {
      reject(new InferenceError("timeout", `${request.op} took longer than ${timeout} ms`, 504));
    }, timeout);
    this.#pending.set(id, {
      resolve: (value) => {
        clearTimeout(timer);
        resolve(value as T);
      },
      reject: (error) => {
        clearTimeout(timer);
        reject(error);
      },
    });
    try {
      this.#worker.postMessage({ ...request, id }, transfer);
    } catch (error) {
      this.#pending.get(id)?.reject(error as Error);
      this.#pending.delete(id);
    }
    return promise;
  }

  #failAll(error: Error): void {
    for (const pending of this.#pending.values()) pending.reject(error);
    this.#pending.clear();
  }

  terminate(): void {
    this.#worker.terminate();
    this.#failAll(new InferenceError("stopped", "the inference worker was stopped", 503));
  }
}

/**
 * The inference Workers of one config.
 *
 * @example
 * ```ts
 * import { InferencePool } from "./pool.ts";
 * const pool = new InferencePool({ workers: 1, timeout: 30_000 });
 * const model = await pool.load(1, "add", "/abs/path/add.onnx");
 * const outputs = await pool.run(1, "add", {
 *   a: { type: "float32", dims: [1, 3], data: new Float32Array([1, 2, 3]) },
 *   b: { type: "float32", dims: [1, 3], data: new Float32Array([1, 1, 1]) },
 * });
 * pool.stop();
 * ```
 */
export class InferencePool {
  readonly #groups = new Map<number, InferenceWorker[]>();

  constructor(readonly options: { workers: number; timeout: number }) {}

  #group(threads: number): InferenceWorker[] {
    let group = this.#groups.get(threads);
    if (!group) {
      group = Array.from({ length: this.options.workers }, () => new InferenceWorker(threads));
      this.#groups.set(threads, group);
    }
    return group;
  }

  #leastBusy(threads: number): InferenceWorker {
    return this.#group(threads).reduce((best, worker) => worker.busy < best.busy ? worker : best);
  }

  /** Creates the model's session in every Worker of its thread group; resolves with its signature. */
  async load(threads: number, name: string, file: string): Promise<LoadedModel> {
    const loaded = await Promise.all(
      this.#group(threads).map((worker) =>
        worker.call<LoadedModel>({ op: "load", name, file }, [], this.options.timeout)
      ),
    );
    return { ...loaded[0], loadMs: Math.max(...loaded.map((l) => l.loadMs)) };
  }

  /**
   * How many calls the Workers of the `threads` group have not answered,
   * runs past their timeout included (they still occupy their Worker).
   */
  busy(threads: number): number {
    return this.#group(threads).reduce((sum, worker) => sum + worker.busy, 0);
  }

  /** Runs a loaded model on the least busy Worker of its group; the feeds' buffers are transferred. */
  run(
    threads: number,
    name: string,
    feeds: Record<string, Tensor>,
  ): Promise<Record<string, Tensor>> {
    const transfer = Object.values(feeds).map((tensor) => tensor.data.buffer as ArrayBuffer);
    return this.#leastBusy(threads).call(
      { op: "run", name, feeds },
      transfer,
      this.options.timeout,
    );
  }

  /** Creates the OCR sessions in every Worker of the `threads` group, ahead of the first page. */
  async loadOcr(threads: number, settings: OcrSettings): Promise<void> {
    await Promise.all(
      this.#group(threads).map((worker) =>
        worker.call({ op: "ocr-load", settings }, [], this.options.timeout)
      ),
    );
  }

  /**
   * Reads a page with the OCR pipeline in the least busy Worker of the
   * `threads` group. The image's buffer is transferred (detached here) when
   * the image spans all of it.
   */
  ocr(
    threads: number,
    settings: OcrSettings,
    image: Uint8Array,
    options: OcrOptions,
  ): Promise<OcrResult> {
    const bytes = image.byteLength === image.buffer.byteLength ? image : image.slice();
    return this.#leastBusy(threads).call(
      { op: "ocr", settings, image: bytes, options },
      [bytes.buffer as ArrayBuffer],
      this.options.timeout,
    );
  }

  /** Terminates every Worker; pending calls fail with `stopped`. */
  stop(): void {
    for (const group of this.#groups.values()) for (const worker of group) worker.terminate();
    this.#groups.clear();
  }
}
