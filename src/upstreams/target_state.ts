/**
 * The state of upstream targets that outlives a config: health, passive
 * ejection, circuit breaker and in-flight counts, kept per target URL in a
 * reference-counted pool (Caddy keeps its reverse proxy hosts the same way),
 * so that a reload's new `Upstream` for a URL carries on where the old one
 * was.
 *
 * The state is plain numbers in fixed slots of one `SharedArrayBuffer`, so
 * another isolate can later read and update it: see {@link TargetStatePool}.
 *
 * @module
 */

/**
 * Where each number of a target's state sits in its slot. Every field is 0
 * for a target nobody has seen yet: healthy, not ejected, breaker closed.
 * Times are epoch milliseconds, the one clock every isolate shares.
 */
export const TargetField = {
  /** 1 when the active health checks last judged the target unhealthy. */
  unhealthy: 0,
  /** Active checks passed in a row. */
  checkPasses: 1,
  /** Active checks failed in a row. */
  checkFailures: 2,
  /** Real requests failed in a row (passive health). */
  requestFailures: 3,
  /** When a passive ejection ends; 0 when not ejected. */
  ejectedUntil: 4,
  /** 0 closed, 1 open, 2 half-open. */
  breakerState: 5,
  /** Failures in a row while the breaker is closed. */
  breakerFailures: 6,
  /** When the breaker last opened. */
  breakerOpenedAt: 7,
  /** Half-open trial requests in flight. */
  breakerTrials: 8,
  /** Requests picked and not yet released. */
  inFlight: 9,
  /** Requests sent, ever. */
  requests: 10,
  /** Requests failed, ever. */
  failures: 11,
} as const;

/** A field of {@link TargetField}. */
export type TargetFieldIndex = typeof TargetField[keyof typeof TargetField];

/** Numbers per slot. */
const SLOT_SIZE = 12;
const BYTES_PER_SLOT = SLOT_SIZE * Float64Array.BYTES_PER_ELEMENT;
/** The buffer grows up to this many targets (6 MiB of address space). */
const MAX_SLOTS = 65_536;

/**
 * One target's slot: reads and writes its numbers in place.
 *
 * @example
 * ```ts
 * import { TargetField, TargetStatePool } from "./target_state.ts";
 * const pool = new TargetStatePool();
 * const state = pool.acquire("http://127.0.0.1:9000");
 * state.add(TargetField.inFlight, 1);
 * state.get(TargetField.inFlight); // 1
 * ```
 */
export class TargetState {
  #values: Float64Array;
  #base: number;

  /** The state in slot `slot` of `values` (a view of a pool's {@link TargetStatePool.buffer}). */
  constructor(values: Float64Array, slot: number) {
    this.#values = values;
    this.#base = slot * SLOT_SIZE;
  }

  /** The value of `field`. */
  get(field: TargetFieldIndex): number {
    return this.#values[this.#base + field];
  }

  /** Sets `field` to `value`. */
  set(field: TargetFieldIndex, value: number): void {
    this.#values[this.#base + field] = value;
  }

  /** Adds `delta` to `field` and returns the new value. */
  add(field: TargetFieldIndex, delta: number): number {
    return this.#values[this.#base + field] += delta;
  }

  /**
   * Moves the state out of the shared slot into memory of its own, so that
   * a request still in flight on a released target updates a copy instead
   * of the slot's next owner. {@link TargetStatePool.release} calls it.
   */
  detach(): void {
    this.#values = this.#values.slice(this.#base, this.#base + SLOT_SIZE);
    this.#base = 0;
  }
}

/**
 * The targets' state by URL, reference-counted: {@link acquire} when an
 * `Upstream` is built, {@link release} when it stops. A URL keeps its state
 * while any upstream references it, across any number of reloads; when the
 * last one lets go, the slot is zeroed and reused. Two upstreams naming the
 * same URL share its state.
 *
 * Another isolate (a data-path Worker) can use the same state: post it
 * {@link buffer} (a `SharedArrayBuffer` is shared, not copied; it grows in
 * place and a `Float64Array` over it follows) and the slot of each URL
 * ({@link slotOf}), and it reads and updates the numbers with
 * `new TargetState(new Float64Array(buffer), slot)`. Only this isolate
 * acquires and releases slots. Today one isolate writes; a second writer
 * needs updates serialised (Float64 fields are not atomic), for example
 * with `Atomics` on an `Int32Array` lock word beside the slots.
 *
 * @example
 * ```ts
 * import { TargetField, TargetStatePool } from "./target_state.ts";
 * const pool = new TargetStatePool();
 * const before = pool.acquire("http://127.0.0.1:9000");
 * before.set(TargetField.unhealthy, 1);
 * const after = pool.acquire("http://127.0.0.1:9000"); // the reload's upstream
 * pool.release("http://127.0.0.1:9000"); // the old upstream stops
 * after.get(TargetField.unhealthy); // 1
 * pool.release("http://127.0.0.1:9000");
 * pool.size; // 0
 * ```
 */
export class TargetStatePool {
  readonly #buffer: SharedArrayBuffer;
  readonly #values: Float64Array;
  readonly #entries = new Map<string, { slot: number; state: TargetState; refs: number }>();
  readonly #freeSlots: number[] = [];
  #slots = 0;

  /** An empty pool with room for `capacity` targets before it grows. */
  constructor(capacity = 64) {
    this.#buffer = new SharedArrayBuffer(capacity * BYTES_PER_SLOT, {
      maxByteLength: MAX_SLOTS * BYTES_PER_SLOT,
    });
    this.#values = new Float64Array(this.#buffer);
  }

  /** The memory of every slot, for another isolate. */
  get buffer(): SharedArrayBuffer {
    return this.#buffer;
  }

  /** How many URLs hold state. */
  get size(): number {
    return this.#entries.size;
  }

  /** The slot of `url`, if it holds state. */
  slotOf(url: string): number | undefined {
    return this.#entries.get(url)?.slot;
  }

  /** The state of `url`, created fresh (healthy, closed, idle) when no one holds it. */
  acquire(url: string): TargetState {
    const entry = this.#entries.get(url);
    if (entry) {
      entry.refs++;
      return entry.state;
    }
    const slot = this.#freeSlots.pop() ?? this.#newSlot();
    const state = new TargetState(this.#values, slot);
    this.#entries.set(url, { slot, state, refs: 1 });
    return state;
  }

  /** Lets go of one {@link acquire} of `url`; the last one frees its state. */
  release(url: string): void {
    const entry = this.#entries.get(url);
    if (!entry) throw new Error(`target state of ${url} released more often than acquired`);
    if (--entry.refs > 0) return;
    this.#entries.delete(url);
    entry.state.detach();
    this.#values.fill(0, entry.slot * SLOT_SIZE, (entry.slot + 1) * SLOT_SIZE);
    this.#freeSlots.push(entry.slot);
  }

  #newSlot(): number {
    const needed = (this.#slots + 1) * BYTES_PER_SLOT;
    if (needed > this.#buffer.maxByteLength) {
      throw new Error(`upstream target state: more than ${MAX_SLOTS} target URLs`);
    }
    if (needed > this.#buffer.byteLength) {
      this.#buffer.grow(
        Math.min(this.#buffer.maxByteLength, Math.max(needed, this.#buffer.byteLength * 2)),
      );
    }
    return this.#slots++;
  }
}
