/**
 * Joins concurrent requests for one model into a single run: requests whose
 * inputs have the same names, types and shapes apart from the first (batch)
 * dimension wait up to `windowMs` for each other, at most `maxBatch` of
 * them; their inputs are concatenated along the first dimension, run once,
 * and every output is split back by the rows each request brought.
 *
 * @module
 */

import type { Tensor, TypedData } from "./tensor.ts";

type Feeds = Record<string, Tensor>;
type Run = (feeds: Feeds) => Promise<Feeds>;

interface Waiting {
  feeds: Feeds;
  rows: number;
  resolve: (outputs: Feeds) => void;
  reject: (error: Error) => void;
}

function concat(parts: TypedData[]): TypedData {
  const length = parts.reduce((sum, part) => sum + part.length, 0);
  const Constructor = parts[0].constructor as new (length: number) => TypedData;
  const out = new Constructor(length);
  let offset = 0;
  for (const part of parts) {
    (out as Float32Array).set(part as Float32Array, offset);
    offset += part.length;
  }
  return out;
}

/**
 * Batches the runs of one model.
 *
 * @example
 * ```ts
 * import { Batcher } from "./batcher.ts";
 * const batcher = new Batcher({ maxBatch: 8, windowMs: 2 }, async (feeds) => feeds, (size) => {});
 * const x = { type: "float32" as const, dims: [1, 2], data: new Float32Array([1, 2]) };
 * await batcher.run({ x }); // { x: { dims: [1, 2], ... } }
 * ```
 */
export class Batcher {
  readonly #queues = new Map<
    string,
    { waiting: Waiting[]; timer: ReturnType<typeof setTimeout> }
  >();

  constructor(
    readonly options: { maxBatch: number; windowMs: number },
    readonly runBatch: Run,
    readonly onBatch: (size: number) => void,
  ) {}

  /** Runs `feeds` alone or with other compatible requests; every input's first dimension is its rows. */
  run(feeds: Feeds): Promise<Feeds> {
    const tensors = Object.entries(feeds).sort(([a], [b]) => a.localeCompare(b));
    const rows = tensors[0]?.[1].dims[0];
    if (rows === undefined || tensors.some(([, t]) => t.dims.length === 0 || t.dims[0] !== rows)) {
      this.onBatch(1);
      return this.runBatch(feeds);
    }
    const key = tensors.map(([name, t]) => `${name}:${t.type}[${t.dims.slice(1)}]`).join(" ");
    const { promise, resolve, reject } = Promise.withResolvers<Feeds>();
    let queue = this.#queues.get(key);
    if (!queue) {
      queue = { waiting: [], timer: setTimeout(() => this.#flush(key), this.options.windowMs) };
      this.#queues.set(key, queue);
    }
    queue.waiting.push({ feeds, rows, resolve, reject });
    if (queue.waiting.length >= this.options.maxBatch) this.#flush(key);
    return promise;
  }

  #flush(key: string): void {
    const queue = this.#queues.get(key);
    if (!queue) return;
    this.#queues.delete(key);
    clearTimeout(queue.timer);
    const { waiting } = queue;
    this.onBatch(waiting.length);
    if (waiting.length === 1) {
      this.runBatch(waiting[0].feeds).then(waiting[0].resolve, waiting[0].reject);
      return;
    }
    const total = waiting.reduce((sum, w) => sum + w.rows, 0);
    const joined: Feeds = {};
    for (const [name, first] of Object.entries(waiting[0].feeds)) {
      joined[name] = {
        type: first.type,
        dims: [total, ...first.dims.slice(1)],
        data: concat(waiting.map((w) => w.feeds[name].data)),
      };
    }
    this.runBatch(joined).then((outputs) => {
      let row = 0;
      for (const w of waiting) {
        const mine: Feeds = {};
        for (const [name, output] of Object.entries(outputs)) {
          if (output.dims[0] !== total) {
            throw new Error(
              `output ${name} has ${
                output.dims[0]
              } rows for a batch of ${total}: the model does not batch along its first dimension`,
            );
          }
          const perRow = output.data.length / total;
          mine[name] = {
            type: output.type,
            dims: [w.rows, ...output.dims.slice(1)],
            data: output.data.slice(row * perRow, (row + w.rows) * perRow),
          };
        }
        row += w.rows;
        w.resolve(mine);
      }
    }).catch((error: Error) => {
      for (const w of waiting) w.reject(error);
    });
  }
}
