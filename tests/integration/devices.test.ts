/**
 * Device access through the real gateway process: TCP, UDP, WebSocket and
 * Unix-socket clients connect, show up in the admin API, receive pushes that
 * HTTP clients publish on the bus, and can be closed from the admin API.
 */

import { assert, assertEquals, assertStringIncludes } from "../helpers/assert.ts";
import { type GatewayProcess, startGateway } from "../helpers/gateway.ts";
import { until } from "../helpers/wait.ts";

const decoder = new TextDecoder();
const encoder = new TextEncoder();

interface Ports {
  web: number;
  plc: number;
  sensors: number;
}

async function startDeviceGateway(): Promise<{ gw: GatewayProcess; ports: Ports; socket: string }> {
  const gw = await startGateway({
    listeners: {
      web: { type: "http", host: "127.0.0.1", port: 0 },
      plc: {
        type: "tcp",
        host: "127.0.0.1",
        port: 0,
        framing: { type: "line" },
        handshake: "device-id",
        limits: { maxPerIp: 3 },
      },
      sensors: { type: "udp", host: "127.0.0.1", port: 0 },
      local: { type: "unix", path: "gateway.sock", protocol: "http", mode: "600" },
    },
    routes: [
      {
        match: { path: "/push/:id", methods: ["POST"] },
        target: { topic: { topic: "device/{id}/send" } },
      },
      {
        match: { path: "/conn/:id", methods: ["POST"] },
        target: { topic: { topic: "conn/{id}/send" } },
      },
      {
        match: { path: "/ws/:site" },
        target: { websocket: { topic: "ws/{site}/{connectionId}" } },
      },
      { match: { path: "/health" }, target: { respond: { body: "ok" } } },
    ],
  });
  const ports = {
    web: await gw.port("web"),
    plc: await gw.port("plc"),
    sensors: await gw.port("sensors"),
  };
  return { gw, ports, socket: `${gw.dir}/gateway.sock` };
}

async function connections(gw: GatewayProcess, query = ""): Promise<Record<string, unknown>[]> {
  const res = await gw.admin(`/connections${query}`);
  assertEquals(res.status, 200);
  return await res.json();
}

async function push(port: number, path: string, body: string): Promise<number> {
  const res = await fetch(`http://127.0.0.1:${port}${path}`, { method: "POST", body });
  assertEquals(res.status, 202, await res.clone().text());
  return (await res.json()).subscribers;
}

Deno.test("TCP device: handshake binds the device, pushes arrive framed, the admin API lists and kicks it", async () => {
  const { gw, ports } = await startDeviceGateway();
  try {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port: ports.plc });
    await conn.write(encoder.encode("plc-1\n"));
    const listed = await until("the device is bound", async () => {
      const list = await connections(gw, "?device=plc-1");
      return list.length === 1 ? list[0] : undefined;
    });
    assertEquals(listed.listener, "plc");
    assertEquals(listed.protocol, "tcp");
    assertEquals(await push(ports.web, "/push/plc-1", "ON"), 1);
    const buffer = new Uint8Array(64);
    const n = await conn.read(buffer);
    assertEquals(decoder.decode(buffer.subarray(0, n ?? 0)), "ON\n");

    const kicked = await gw.admin(`/connections/${listed.id}`, { method: "DELETE" });
    assertEquals(kicked.status, 204);
    assertEquals(await conn.read(buffer), null, "the admin API closed the connection");
    conn.close();
    // One info line when the device is bound and one when it goes.
    await gw.waitForLine(/device plc-1 connected on plc \(tcp 127\.0\.0\.1:\d+, connection /);
    await gw.waitForLine(/device plc-1 disconnected from plc after \d+ s/);
    const unknown = await gw.admin(`/connections/${listed.id}`, { method: "DELETE" });
    assertEquals(unknown.status, 404);
    await unknown.body?.cancel();
  } finally {
    await gw.stop();
  }
});

Deno.test("TCP: connections over the per-IP limit are refused, the others keep working", async () => {
  const { gw, ports } = await startDeviceGateway();
  const conns: Deno.Conn[] = [];
  try {
    for (let i = 0; i < 4; i++) {
      conns.push(await Deno.connect({ hostname: "127.0.0.1", port: ports.plc }));
    }
    const buffer = new Uint8Array(16);
    assertEquals(await conns[3].read(buffer), null, "the fourth connection from one IP is closed");
    await conns[0].write(encoder.encode("dev-a\n"));
    await until(
      "dev-a is bound",
      async () => (await connections(gw, "?device=dev-a")).length ? true : undefined,
    );
    assertEquals(await push(ports.web, "/push/dev-a", "still here"), 1);
    const n = await conns[0].read(buffer);
    assertEquals(decoder.decode(buffer.subarray(0, n ?? 0)), "still here\n");
    const metrics = await (await gw.admin("/metrics")).text();
    assertStringIncludes(metrics, 'reason="ip_limit"');
  } finally {
    for (const conn of conns) {
      try {
        conn.close();
      } catch { /* closed by the gateway */ }
    }
    await gw.stop();
  }
});

Deno.test("UDP peer and WebSocket client receive pushes on conn/<id>/send", async () => {
  const { gw, ports } = await startDeviceGateway();
  const udp = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
  const ws = new WebSocket(`ws://127.0.0.1:${ports.web}/ws/site-9`);
  const opened = new Promise((resolve, reject) => {
    ws.onopen = resolve;
    ws.onerror = reject;
  });
  const received = new Promise<string>((resolve) => {
    ws.onmessage = async (event) =>
      resolve(typeof event.data === "string" ? event.data : await new Blob([event.data]).text());
  });
  try {
    await udp.send(encoder.encode("temp=21.5"), {
      transport: "udp",
      hostname: "127.0.0.1",
      port: ports.sensors,
    });
    const peer = await until("the UDP peer is listed", async () => {
      const list = await connections(gw, "?listener=sensors");
      return list[0];
    });
    assertEquals(peer.protocol, "udp");
    assertEquals(await push(ports.web, `/conn/${peer.id}`, "ack"), 1);
    const [datagram] = await udp.receive();
    assertEquals(decoder.decode(datagram), "ack");

    await opened;
    const socket = await until("the WebSocket is listed", async () => {
      const list = await connections(gw);
      return list.find((c) => c.protocol === "ws");
    });
    assertEquals(await push(ports.web, `/conn/${socket.id}`, "hello ws"), 1);
    assertEquals(await received, "hello ws");
  } finally {
    ws.close();
    udp.close();
    await gw.stop();
  }
});

Deno.test("HTTP over a Unix socket, with the configured file mode", async () => {
  const { gw, socket } = await startDeviceGateway();
  try {
    assertEquals((await Deno.stat(socket)).mode! & 0o777, 0o600);
    const conn = await Deno.connect({ transport: "unix", path: socket });
    await conn.write(
      encoder.encode("GET /health HTTP/1.1\r\nHost: local\r\nConnection: close\r\n\r\n"),
    );
    let text = "";
    const buffer = new Uint8Array(4096);
    for (let n = await conn.read(buffer); n !== null; n = await conn.read(buffer)) {
      text += decoder.decode(buffer.subarray(0, n));
    }
    conn.close();
    assert(text.startsWith("HTTP/1.1 200"), text);
    assert(text.endsWith("ok"), text);
  } finally {
    await gw.stop();
  }
});

Deno.test("reload keeps an unchanged TCP listener's connections and restarts a changed one", async () => {
  const { gw, ports } = await startDeviceGateway();
  const config = JSON.parse(await Deno.readTextFile(gw.configFile));
  const reload = async () => {
    await gw.writeConfig(config);
    const res = await gw.admin("/reload", { method: "POST" });
    assertEquals(res.status, 200, await res.clone().text());
    await res.body?.cancel();
  };
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: ports.plc });
  try {
    await conn.write(encoder.encode("keep-1\n"));
    await until(
      "keep-1 is bound",
      async () => (await connections(gw, "?device=keep-1")).length ? true : undefined,
    );

    config.routes.push({ match: { path: "/extra" }, target: { respond: { body: "extra" } } });
    await reload();
    assertEquals(await push(ports.web, "/push/keep-1", "after reload"), 1);
    const buffer = new Uint8Array(64);
    const n = await conn.read(buffer);
    assertEquals(
      decoder.decode(buffer.subarray(0, n ?? 0)),
      "after reload\n",
      "the connection survived",
    );

    config.listeners.plc.framing = { type: "delimiter", delimiter: ";" };
    await reload();
    assertEquals(await conn.read(buffer), null, "a listener whose settings changed was restarted");
    const fresh = await until("the restarted listener accepts", async () => {
      try {
        // Bound anew on port 0: another port than before.
        return await Deno.connect({ hostname: "127.0.0.1", port: await gw.port("plc") });
      } catch {
        return undefined;
      }
    });
    await fresh.write(encoder.encode("keep-2;"));
    await until(
      "keep-2 is bound",
      async () => (await connections(gw, "?device=keep-2")).length ? true : undefined,
    );
    assertEquals(await push(ports.web, "/push/keep-2", "new framing"), 1);
    const m = await fresh.read(buffer);
    assertEquals(decoder.decode(buffer.subarray(0, m ?? 0)), "new framing;");
    fresh.close();
  } finally {
    try {
      conn.close();
    } catch { /* closed by the gateway */ }
    await gw.stop();
  }
});

Deno.test("out of file descriptors: the gateway survives, keeps its connections, and recovers", async () => {
  const gw = await startGateway({
    listeners: {
      web: { type: "http", host: "127.0.0.1", port: 0 },
      plc: { type: "tcp", host: "127.0.0.1", port: 0, handshake: "device-id" },
    },
    routes: [
      {
        match: { path: "/push/:id", methods: ["POST"] },
        target: { topic: { topic: "device/{id}/send" } },
      },
      { match: { path: "/health" }, target: { respond: { body: "ok" } } },
    ],
    log: { access: false },
  }, { prefix: ["prlimit", "--nofile=128:128"] });
  const ports = { web: await gw.port("web"), plc: await gw.port("plc") };
  const held: Deno.Conn[] = [];
  const closeAll = () => {
    for (const conn of held.splice(0)) {
      try {
        conn.close();
      } catch { /* closed by the gateway */ }
    }
  };
  try {
    const device = await Deno.connect({ hostname: "127.0.0.1", port: ports.plc });
    await device.write(encoder.encode("survivor\n"));
    await until(
      "survivor is bound",
      async () => (await connections(gw, "?device=survivor")).length ? true : undefined,
    );
    // Far more connections than descriptors, on both listeners.
    for (let i = 0; i < 150; i++) {
      for (const port of [ports.plc, ports.web]) {
        try {
          held.push(await Deno.connect({ hostname: "127.0.0.1", port }));
        } catch { /* refused while the gateway is out of descriptors */ }
      }
    }
    await new Promise((r) => setTimeout(r, 300));
    const metrics = await (await gw.admin("/metrics").catch(() => null))?.text() ?? "";
    closeAll();
    await until("HTTP serves again", async () => {
      try {
        const res = await fetch(`http://127.0.0.1:${ports.web}/health`);
        return (await res.text()) === "ok" ? true : undefined;
      } catch {
        return undefined;
      }
    });
    assertEquals(await push(ports.web, "/push/survivor", "still alive"), 1);
    const buffer = new Uint8Array(32);
    const n = await device.read(buffer);
    assertEquals(
      decoder.decode(buffer.subarray(0, n ?? 0)),
      "still alive\n",
      "the old connection kept working",
    );
    device.close();
    assert(
      metrics === "" || metrics.includes('reason="fd_budget"') ||
        gw.output.includes("out of file descriptors"),
      "the exhaustion was noticed (refusals counted or logged)",
    );
    // The kernel's accept queue still holds flood connections the client already closed; the
    // gateway admits, sees the end of, and releases each, so while it drains them the budget can
    // be full and a newcomer refused. A device retries, as this one does, until it is admitted.
    const newcomer = await until("a new device is admitted after recovery", async () => {
      const conn = await Deno.connect({ hostname: "127.0.0.1", port: ports.plc }).catch(() => null);
      if (!conn) return undefined;
      await conn.write(encoder.encode("newcomer\n")).catch(() => {});
      await new Promise((r) => setTimeout(r, 100));
      if ((await connections(gw, "?device=newcomer")).length) return conn;
      conn.close();
      return undefined;
    });
    newcomer.close();
  } finally {
    closeAll();
    const status = await gw.stop();
    assertEquals(
      status.code,
      0,
      `the gateway exited cleanly after the flood:\n${gw.output.slice(-2000)}`,
    );
  }
});
