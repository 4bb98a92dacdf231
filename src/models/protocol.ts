/**
 * The messages between the inference pool (main isolate) and an inference
 * worker. Every request carries an `id`; the worker answers each with a
 * {@link WorkerReply} of the same id. Tensor data and image bytes travel as
 * transferred buffers, never copied.
 *
 * @module
 */

import type { Tensor, TensorSignature } from "./tensor.ts";
import type { OcrOptions, OcrResult, OcrSettings } from "./ocr/types.ts";

/** Creates a session from a model file (an absolute path). */
export interface LoadRequest {
  op: "load";
  name: string;
  file: string;
}

/** Runs a loaded session. */
export interface RunRequest {
  op: "run";
  name: string;
  feeds: Record<string, Tensor>;
}

/** Creates the OCR pipeline's sessions and reads its key file ahead of the first page. */
export interface OcrLoadRequest {
  op: "ocr-load";
  settings: OcrSettings;
}

/** Reads a page: the whole OCR pipeline runs in the worker. */
export interface OcrRequest {
  op: "ocr";
  settings: OcrSettings;
  image: Uint8Array;
  options: OcrOptions;
}

/** Anything the pool asks a worker, with its id. */
export type WorkerRequest = (LoadRequest | RunRequest | OcrLoadRequest | OcrRequest) & {
  id: number;
};

/** What a worker learnt from a loaded model. */
export interface LoadedModel {
  inputs: TensorSignature[];
  outputs: TensorSignature[];
  loadMs: number;
}

/** A worker's answer to a request. */
export type WorkerReply =
  & { id: number }
  & (
    | { ok: true; result: LoadedModel | Record<string, Tensor> | OcrResult | null }
    | { ok: false; error: { type: string; message: string; status?: number } }
  );

/** The first message a worker receives: its WebAssembly thread count. */
export interface WorkerInit {
  threads: number;
}
