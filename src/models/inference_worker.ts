/**
 * The inference worker: runs INSIDE a Deno `Worker`, never on the main
 * isolate. It holds onnxruntime-web sessions (WebAssembly backend, the
 * thread count it is started with) and answers the pool's
 * {@link WorkerRequest}s: load and run sessions, and read a page with
 * the whole OCR pipeline, so that image decoding and box geometry stay off
 * the gateway's event loop too.
 *
 * The pool starts it as
 * ```ts
 * const worker = new Worker(new URL("./inference_worker.ts", import.meta.url), { type: "module" });
 * worker.postMessage({ threads: 2 });
 * ```
 *
 * @module
 */

import * as ort from "onnxruntime-web";
import type { LoadedModel, WorkerInit, WorkerReply, WorkerRequest } from "./protocol.ts";
import type { Tensor, TensorSignature } from "./tensor.ts";
import type { TensorType } from "./config.ts";
import { readPage } from "./ocr/pipeline.ts";
import type { OcrSettings } from "./ocr/types.ts";

declare const self: {
  onmessage: ((event: MessageEvent) => void) | null;
  postMessage(message: unknown, transfer?: Transferable[]): void;
};

const sessions = new Map<string, ort.InferenceSession>();
/** OCR sessions by model file, created on first use. */
const ocrSessions = new Map<string, Promise<ort.InferenceSession>>();

function signature(metadata: readonly ort.InferenceSession.ValueMetadata[]): TensorSignature[] {
  return metadata.map((value) =>
    value.isTensor
      ? { name: value.name, type: value.type, dims: [...value.shape] }
      : { name: value.name, type: "non-tensor", dims: [] }
  );
}

async function createSession(file: string): Promise<ort.InferenceSession> {
  const bytes = await Deno.readFile(file);
  return await ort.InferenceSession.create(bytes, {
    executionProviders: ["wasm"],
    graphOptimizationLevel: "all",
  });
}

async function load(name: string, file: string): Promise<LoadedModel> {
  const started = performance.now();
  const session = await createSession(file);
  sessions.set(name, session);
  return {
    inputs: signature(session.inputMetadata),
    outputs: signature(session.outputMetadata),
    loadMs: performance.now() - started,
  };
}

/** The session of an OCR model file; a failed creation is tried again on the next page. */
function ocrSession(file: string): Promise<ort.InferenceSession> {
  let session = ocrSessions.get(file);
  if (!session) {
    session = createSession(file);
    ocrSessions.set(file, session);
    session.catch(() => ocrSessions.delete(file));
  }
  return session;
}

async function run(session: ort.InferenceSession, feeds: Record<string, Tensor>) {
  const inputs: Record<string, ort.Tensor> = {};
  for (const [name, tensor] of Object.entries(feeds)) {
    inputs[name] = new ort.Tensor(tensor.type, tensor.data, tensor.dims);
  }
  const results = await session.run(inputs);
  const outputs: Record<string, Tensor> = {};
  for (const [name, value] of Object.entries(results)) {
    const data = value.data as Tensor["data"];
    outputs[name] = {
      type: value.type as TensorType,
      dims: [...value.dims],
      // A view into a larger buffer is copied so that the reply can transfer it.
      data: data.byteLength === data.buffer.byteLength ? data : data.slice(),
    };
    value.dispose();
  }
  return outputs;
}

const keyFiles = new Map<string, Promise<string[]>>();

async function readKeys(file: string): Promise<string[]> {
  const text = await Deno.readTextFile(file);
  return [
    ...text.replace(/\r/g, "").split("\n").filter((line, i, all) =>
      line !== "" || i < all.length - 1
    ),
    " ",
  ];
}

function ocrModels(settings: OcrSettings) {
  let keys = keyFiles.get(settings.keys);
  if (!keys) {
    keys = readKeys(settings.keys);
    keyFiles.set(settings.keys, keys);
    keys.catch(() => keyFiles.delete(settings.keys));
  }
  const runner = (file: string) => async (feeds: Record<string, Tensor>) =>
    await run(await ocrSession(file), feeds);
  return {
    detect: runner(settings.detection),
    recognize: runner(settings.recognition),
    classify: runner(settings.classifier),
    keys,
  };
}

async function handle(request: WorkerRequest): Promise<WorkerReply & { ok: true }> {
  switch (request.op) {
    case "load":
      return { id: request.id, ok: true, result: await load(request.name, request.file) };
    case "ocr-load": {
      const { settings } = request;
      await Promise.all([
        ocrSession(settings.detection),
        ocrSession(settings.recognition),
        ocrSession(settings.classifier),
        ocrModels(settings).keys,
      ]);
      return { id: request.id, ok: true, result: null };
    }
    case "run": {
      const session = sessions.get(request.name);
      if (!session) throw new Error(`model "${request.name}" is not loaded in this worker`);
      return { id: request.id, ok: true, result: await run(session, request.feeds) };
    }
    case "ocr": {
      const models = ocrModels(request.settings);
      const result = await readPage(request.image, request.settings, request.options, {
        ...models,
        keys: await models.keys,
      });
      return { id: request.id, ok: true, result };
    }
  }
}

function transferables(reply: WorkerReply): Transferable[] {
  if (!reply.ok || !reply.result || "lines" in reply.result || "inputs" in reply.result) return [];
  return Object.values(reply.result as Record<string, Tensor>).map((t) =>
    t.data.buffer as ArrayBuffer
  );
}

let initialised = false;
self.onmessage = (event: MessageEvent) => {
  if (!initialised) {
    const init = event.data as WorkerInit;
    ort.env.wasm.numThreads = init.threads;
    ort.env.logLevel = "error";
    initialised = true;
    return;
  }
  const request = event.data as WorkerRequest;
  handle(request).then(
    (reply) => self.postMessage(reply, transferables(reply)),
    (error: Error & { status?: number; code?: string }) =>
      self.postMessage(
        {
          id: request.id,
          ok: false,
          error: {
            type: error.code ?? error.name ?? "Error",
            message: error.message ?? String(error),
            ...(error.status ? { status: error.status } : {}),
          },
        } satisfies WorkerReply,
      ),
  );
};
