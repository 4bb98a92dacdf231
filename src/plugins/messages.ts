/**
 * The messages between the gateway and a plugin's Worker (structured clone
 * over `postMessage`). The host sends {@link HostMessage}s; the runtime inside
 * the Worker answers with {@link RuntimeMessage}s. Requests in either
 * direction carry an `id` and are answered by `done`/`failed` (host → runtime
 * work) or `answer` (runtime → host asks).
 *
 * @module
 */

import type { PluginRequest } from "../../sdk/plugin.ts";
import type { BusGrant } from "../bus/access.ts";

/** What the plugin said about itself, once loaded. */
export interface PluginInfo {
  name: string;
  version: string;
  priority: number;
  permissions: Record<string, unknown>;
  hooks: { onRequest: boolean; onResponse: boolean };
  functions: string[];
  /** The filters of its `onMessage` handlers. */
  messages: string[];
  /** The plugins it requires, by name, with their version ranges (`{ auth: "^1.2" }`). */
  requires: Record<string, string>;
  /** Whether it hands state to its next version (`snapshot`) and takes it from the last (`restore`). */
  handover: { snapshot: boolean; restore: boolean };
}

/** An error as it crosses the Worker boundary, with where it happened. */
export interface PluginErrorInfo {
  type: string;
  message: string;
  stack?: string;
  /** `file:line:column` in the plugin's own source, when the stack names one. */
  at?: string;
}

/** A request without its body, as data: what `onRequest` gets before the body readers are added. */
export type RequestData = Omit<PluginRequest, "text" | "bytes" | "json">;

/** A response without its body, as data, with the state the plugin's `onRequest` kept. */
export interface ResponseData {
  status: number;
  headers: Record<string, string>;
  state?: unknown;
}

/** A body, or changes' body, as it crosses: bytes, text, or JSON-able data. */
export type BodyData = string | Uint8Array | object;

/** Changes a hook returned; `respond` is set when `onRequest` answered instead of the target. */
export interface HookResult {
  /** From `onRequest`: kept for this request and handed to the plugin's own `onResponse`. */
  state?: unknown;
  respond?: { status: number; headers?: Record<string, string>; body?: BodyData };
  method?: string;
  url?: string;
  status?: number;
  headers?: Record<string, string>;
  body?: BodyData;
}

/** A bus message as it crosses. */
export interface MessageData {
  topic: string;
  payload: Uint8Array;
  source: { listener: string; protocol: string; connectionId?: string; deviceId?: string };
  meta: Record<string, string>;
  /** Present when the message can be answered: the host keeps the reply function under it. */
  replyId?: number;
}

/** Host → runtime. */
export type HostMessage =
  /** Import, check, settings, init; a probe only imports and describes (no settings, no init). */
  | { kind: "load"; url: string; name: string; settings: unknown; probe: boolean; bus?: BusGrant }
  /** After `imported`, once what the plugin requires is ready: check settings and run `init`. */
  | { kind: "init" }
  /** The old version's state for the next one, as structured-clone bytes (`node:v8` serialize). */
  | { kind: "snapshot"; id: number; deadline: number }
  | { kind: "restore"; id: number; deadline: number; state: Uint8Array }
  | { kind: "request"; id: number; deadline: number; request: RequestData }
  | { kind: "response"; id: number; deadline: number; request: RequestData; response: ResponseData }
  | { kind: "call"; id: number; deadline: number; fn: string; args: unknown }
  | { kind: "message"; subscription: number; message: MessageData }
  | { kind: "answer"; id: number; value?: unknown; error?: PluginErrorInfo }
  | { kind: "ping"; id: number }
  | { kind: "stop"; id: number; deadline: number };

/** One write of a `ctx.store.atomic()` operation; `ttl` in ms. */
export type StoreMutation =
  | { type: "set"; key: string; value: unknown; ttl?: number }
  | { type: "delete"; key: string };

/** What a plugin asks of its store; `versionstamp` null means "no such key". */
export type StoreAsk =
  | { op: "store.get"; key: string }
  | { op: "store.getEntry"; key: string }
  | { op: "store.set"; key: string; value: unknown; ttl?: number }
  | { op: "store.delete"; key: string }
  | { op: "store.list"; prefix: string; limit: number }
  | { op: "store.increment"; key: string; by: number }
  | {
    op: "store.atomic";
    checks: { key: string; versionstamp: string | null }[];
    mutations: StoreMutation[];
  };

/** The operations a plugin asks of the host through `ctx`. */
export type AskMessage =
  | { op: "body"; work: number }
  | { op: "call"; fn: string; args: unknown; deadline: number }
  | { op: "request"; topic: string; payload: Uint8Array; deadline: number }
  | StoreAsk;

/** Runtime → host. */
export type RuntimeMessage =
  /** Imported and checked; its `init` waits for the host's `init` (what it requires starts first). */
  | { kind: "imported"; info: PluginInfo }
  | { kind: "loaded"; info: PluginInfo }
  | { kind: "load-failed"; error: PluginErrorInfo }
  | { kind: "done"; id: number; value?: unknown }
  | { kind: "failed"; id: number; error: PluginErrorInfo }
  | ({ kind: "ask"; id: number } & AskMessage)
  | { kind: "publish"; topic: string; payload: Uint8Array; meta: Record<string, string> }
  | { kind: "reply"; replyId: number; payload: Uint8Array }
  | { kind: "subscribe"; subscription: number; filter: string }
  | { kind: "unsubscribe"; subscription: number }
  | { kind: "log"; level: "debug" | "info" | "warn" | "error"; message: string; fields?: object }
  | {
    kind: "metric";
    type: "counter" | "gauge" | "histogram";
    name: string;
    help: string;
    value: number;
    labels: Record<string, string>;
  }
  | { kind: "pong"; id: number };
