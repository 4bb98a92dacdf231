/**
 * A small pool of inference Workers. Workers are grouped by their
 * WebAssembly thread count (onnxruntime-web sets it once per Worker); a model
 * is loaded into every Worker of its group, and each run goes to a free
 * Worker of the group (one run at a time each), or waits in the group's
 * bounded queue. Requests and replies are matched by id; tensor buffers and
 * image bytes are transferred, not copied.
 *
 * Every Worker is supervised: a run past its deadline means the Worker is
 * stuck in it, so it is terminated and replaced (the next run does not wait
 * for the stuck one); a Worker that crashes is replaced too. A replacement
 * loads what its group had loaded before it takes runs; replacements back
 * off exponentially, and a Worker that keeps dying quickly is `failed`.
 *
 * @module
 */

import { FunctionCallError } from "../functions/call.ts";
import { PendingCalls } from "../supervision/pending.ts";
import { CallPool, type PoolMember } from "../supervision/pool.ts";
import { Restarter } from "../supervision/restart.ts";
import type { LoadedModel, WorkerInit, WorkerReply, WorkerRequest } from "./protocol.ts";
import type { Tensor } from "./tensor.ts";
import type { OcrOptions, OcrResult, OcrSettings } from "./ocr/types.ts";

/** Runs waiting for a free Worker of a group at most; more answer `overloaded`. */
const QUEUE_LIMIT = 1024;
const INFERENCE_WORKER = new URL("./inference_worker.ts", import.meta.url);

/**
 * A failure reported by an inference worker, with the runtime's own type and
 * message (and the HTTP status when the worker knows it, as for bad images).
 *
 * @example
 * ```ts
 * import { InferenceError } from "./pool.ts";
 * new InferenceError("Error", "input 'a' is missing").status; // 500
 * ```
 */
export class InferenceError extends Error {
  constructor(readonly type: string, message: string, readonly status = 500) {
    super(message);
    this.name = "InferenceError";
  }
}

type Request = WorkerRequest extends infer R ? R extends unknown ? Omit<R, "id"> : never : never;
/** What a replacement Worker loads before it takes runs: its group's model and OCR loads. */
type Preload = Extract<Request, { op: "load" | "ocr-load" }>;

/** One Worker and the requests it has not answered yet. */
class InferenceWorker implements PoolMember {
  readonly concurrency = 1;
  readonly startedAt = Date.now();
  readonly #worker: Worker;
  readonly #pending: PendingCalls;
  #ready = false;
  #gone = false;

  /** `lost` is told once, when the Worker crashed or was ended for a stuck call. */
  constructor(
    readonly label: string,
    threads: number,
    script: URL,
    readonly lost: (worker: InferenceWorker, why: string) => void,
  ) {
    this.#pending = new PendingCalls({ label });
    this.#worker = new Worker(script, {
      type: "module",
      name: label,
    });
    this.#worker.postMessage({ threads } satisfies WorkerInit);
    this.#worker.onmessage = (event: MessageEvent<WorkerReply>) => {
      const reply = event.data;
      if (reply.ok) this.#pending.resolve(reply.id, reply.result);
      else {
        this.#pending.reject(
          reply.id,
          new InferenceError(reply.error.type, reply.error.message, reply.error.status),
        );
      }
    };
    this.#worker.onerror = (event) => {
      event.preventDefault();
      this.#lose(`${label} crashed: ${event.message}`);
    };
  }

  /** Takes runs: started, what its group had loaded is loaded, not lost. */
  get healthy(): boolean {
    return this.#ready && !this.#gone;
  }

  get inFlight(): number {
    return this.#pending.size;
  }

  /** Loads `preloads` (a replacement's catch-up), then takes runs. */
  async start(preloads: Preload[], deadline: () => number): Promise<void> {
    for (const preload of preloads) await this.call(preload, [], deadline());
    this.#ready = true;
  }

  /** Sends `request`; past `deadline` the call fails as `timeout` and the Worker is ended. */
  call<T>(request: Request, transfer: Transferable[], deadline: number): Promise<T> {
    if (this.#gone) {
      return Promise.reject(
        new FunctionCallError({ type: "worker_exited", message: `${this.label} is gone` }),
      );
    }
    const { id, result } = this.#pending.open<T>(
      request.op,
      deadline,
      undefined,
      () => queueMicrotask(() => this.#lose(`${this.label} was stuck in ${request.op}`)),
    );
    try {
      this.#worker.postMessage({ ...request, id }, transfer);
    } catch (error) {
      this.#pending.reject(id, error as Error);
    }
    return result;
  }

  /** Ends the Worker; what it had not answered fails with `error`. */
  terminate(error: Error): void {
    this.#gone = true;
    this.#worker.terminate();
    this.#pending.failAll(error);
  }

  #lose(why: string): void {
    if (this.#gone) return;
    this.terminate(new FunctionCallError({ type: "worker_exited", message: why }));
    this.lost(this, why);
  }
}

/** One slot of a group: the Worker in it now and its restarts. */
interface Slot {
  worker: InferenceWorker;
  readonly restarter: Restarter;
}

/** The Workers of one thread count, what they loaded, and the runs waiting for them. */
class Group {
  readonly slots: Slot[] = [];
  readonly pool: CallPool<InferenceWorker>;
  /** Loads every Worker of the group has had, in order: a replacement repeats them. */
  readonly preloads = new Map<string, Preload>();

  constructor(readonly threads: number) {
    this.pool = new CallPool(`inference Workers (${threads} threads)`, QUEUE_LIMIT);
  }

  /**
   * Why no Worker will take a run, when every slot is failed (runs wait for
   * a slot in backoff: its replacement comes within their deadline or not).
   */
  down(): FunctionCallError | undefined {
    if (!this.slots.every((slot) => slot.restarter.state === "failed")) return undefined;
    return new FunctionCallError({
      type: "unavailable",
      message: `the inference Workers (${this.threads} threads) failed: ` +
        this.slots[0].restarter.reason,
    });
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
  readonly #groups = new Map<number, Group>();
  #stopped = false;

  /** `script` is the Worker's module: the inference worker, or one that wraps it. */
  constructor(
    readonly options: { workers: number; timeout: number },
    readonly script: URL = INFERENCE_WORKER,
  ) {}

  /**
   * The Workers as `GET /models` shows them: by thread count, each one's
   * state, replacements (after a stuck call or a crash) and why.
   */
  status(): { threads: number; state: string; restarts: number; reason: string | null }[] {
    return [...this.#groups.values()].flatMap((group) =>
      group.slots.map(({ restarter }) => ({
        threads: group.threads,
        state: restarter.state,
        restarts: restarter.restarts,
        reason: restarter.reason ?? null,
      }))
    );
  }

  #deadline(): number {
    return Date.now() + this.options.timeout;
  }

  #group(threads: number): Group {
    let group = this.#groups.get(threads);
    if (!group) {
      const created = new Group(threads);
      for (let index = 0; index < this.options.workers; index++) {
        const slot: Slot = {
          worker: this.#spawn(created, index),
          restarter: new Restarter(() => this.#replace(created, slot, index)),
        };
        created.slots.push(slot);
        this.#start(created, slot);
      }
      this.#groups.set(threads, created);
      group = created;
    }
    return group;
  }

  #spawn(group: Group, index: number): InferenceWorker {
    const label = `inference Worker ${index} (${group.threads} threads)`;
    return new InferenceWorker(label, group.threads, this.script, (worker, why) => {
      const slot = group.slots.find((slot) => slot.worker === worker);
      if (!slot || this.#stopped) return;
      group.pool.delete(worker);
      slot.restarter.crashed(why, Date.now() - worker.startedAt);
      const down = group.down();
      if (down) group.pool.close(down);
    });
  }

  /** The restarter's restart: a new Worker in `slot`. */
  #replace(group: Group, slot: Slot, index: number): void {
    if (this.#stopped) return;
    slot.worker = this.#spawn(group, index);
    this.#start(group, slot);
  }

  /** Lets `slot`'s Worker catch up on the group's loads, then take runs. */
  #start(group: Group, slot: Slot): void {
    const worker = slot.worker;
    group.pool.add(worker);
    worker.start([...group.preloads.values()], () => this.#deadline()).then(() => {
      if (slot.worker !== worker) return;
      slot.restarter.started();
      group.pool.wake();
    }, () => {/* lost: its restarter has it */});
  }

  /** Sends `request` to every Worker of the group (loads); remembered for replacements. */
  async #everywhere<T>(threads: number, key: string, request: Preload): Promise<T[]> {
    const group = this.#group(threads);
    group.preloads.set(key, request);
    try {
      // A load occupies its Worker like a run: when it ends, a queued run may go there.
      return await Promise.all(
        group.slots.map((slot) =>
          slot.worker.call<T>(request, [], this.#deadline()).finally(() => group.pool.wake())
        ),
      );
    } catch (error) {
      group.preloads.delete(key);
      throw error;
    }
  }

  /** Runs `request` on a free Worker of the group, waiting in its queue for one. */
  #one<T>(threads: number, request: Request, transfer: Transferable[]): Promise<T> {
    const group = this.#group(threads);
    const down = group.down();
    if (down) return Promise.reject(down);
    const deadline = this.#deadline();
    return group.pool.run(deadline, (worker) => worker.call<T>(request, transfer, deadline));
  }

  /** Creates the model's session in every Worker of its thread group; resolves with its signature. */
  async load(threads: number, name: string, file: string): Promise<LoadedModel> {
    const loaded = await this.#everywhere<LoadedModel>(threads, `model:${name}`, {
      op: "load",
      name,
      file,
    });
    return { ...loaded[0], loadMs: Math.max(...loaded.map((l) => l.loadMs)) };
  }

  /** How many calls the Workers of the `threads` group are running or have queued. */
  busy(threads: number): number {
    const group = this.#group(threads);
    return group.pool.queued + group.slots.reduce((sum, slot) => sum + slot.worker.inFlight, 0);
  }

  /** Runs a loaded model on a free Worker of its group; the feeds' buffers are transferred. */
  run(
    threads: number,
    name: string,
    feeds: Record<string, Tensor>,
  ): Promise<Record<string, Tensor>> {
    const transfer = Object.values(feeds).map((tensor) => tensor.data.buffer as ArrayBuffer);
    return this.#one(threads, { op: "run", name, feeds }, transfer);
  }

  /** Creates the OCR sessions in every Worker of the `threads` group, ahead of the first page. */
  async loadOcr(threads: number, settings: OcrSettings): Promise<void> {
    await this.#everywhere(threads, `ocr:${JSON.stringify(settings)}`, {
      op: "ocr-load",
      settings,
    });
  }

  /**
   * Reads a page with the OCR pipeline in a free Worker of the `threads`
   * group. The image's buffer is transferred (detached here) when the image
   * spans all of it.
   */
  ocr(
    threads: number,
    settings: OcrSettings,
    image: Uint8Array,
    options: OcrOptions,
  ): Promise<OcrResult> {
    const bytes = image.byteLength === image.buffer.byteLength ? image : image.slice();
    return this.#one(
      threads,
      { op: "ocr", settings, image: bytes, options },
      [bytes.buffer as ArrayBuffer],
    );
  }

  /** Terminates every Worker; calls in flight or queued fail as `unavailable`. */
  stop(): void {
    this.#stopped = true;
    const error = new FunctionCallError({
      type: "unavailable",
      message: "the inference Workers were stopped",
    });
    for (const group of this.#groups.values()) {
      group.pool.close(error);
      for (const slot of group.slots) {
        slot.restarter.stop();
        slot.worker.terminate(error);
      }
    }
    this.#groups.clear();
  }
}
