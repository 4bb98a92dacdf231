"""Gateway worker SDK for Python: standard library only, Python >= 3.9.

A worker registers functions and bus subscriptions, then runs: it connects to
the Unix socket in ``GATEWAY_SOCKET`` and speaks the gateway's worker protocol
(docs/worker-protocol.md, version 2). Calls run in a thread pool of
``concurrency`` threads (default: ``GATEWAY_CONCURRENCY``, the config's
per-instance concurrency). The worker answers heartbeats, reconnects when the
socket drops, and on ``stop`` or SIGTERM finishes its calls in flight and
exits 0.

Example (``python3 orders.py``, started by the gateway)::

    from gateway_worker import Worker

    worker = Worker()

    @worker.function
    def add(args):
        return args["a"] + args["b"]

    @worker.function("greet")
    def greet(args, ctx):
        # call any function through the gateway: a PHP worker's, a plugin's
        title = worker.call("php.title", {"name": args["name"]})
        return {"greeting": f"hello {title}", "deadline_in": ctx.remaining()}

    @worker.subscribe("sensors/+/temperature")
    def on_temperature(event):
        worker.log("info", "temperature", topic=event.topic, value=event.text)
        worker.publish("alerts/temperature", {"topic": event.topic})

    if __name__ == "__main__":
        worker.run()
"""

import base64
import inspect
import json
import os
import signal
import socket
import struct
import sys
import threading
import time
import traceback
from concurrent.futures import ThreadPoolExecutor

__all__ = ["Worker", "CallError", "Context", "Event"]

PROTOCOL = 2
_HEADER = struct.Struct(">I")


class CallError(Exception):
    """A call made with ``Worker.call`` failed; ``type`` says how (timeout, ...)."""

    def __init__(self, type, message, traceback=None):
        super().__init__(f"{type}: {message}")
        self.type = type
        self.message = message
        self.traceback = traceback


class Context:
    """What a function learns about its call: deadline, meta, cancellation."""

    def __init__(self, call_id, timeout_ms, meta):
        self.id = call_id
        self.deadline = time.monotonic() + (timeout_ms / 1000 if timeout_ms is not None else 30)
        self.meta = meta or {}
        self.cancelled = threading.Event()

    def remaining(self):
        """Seconds left before the caller gives up."""
        return max(0.0, self.deadline - time.monotonic())


class Event:
    """A bus message delivered to a subscription."""

    def __init__(self, frame):
        self.topic = frame["topic"]
        self.filter = frame.get("filter")
        self.meta = frame.get("meta") or {}
        if frame.get("encoding") == "base64":
            self.payload = base64.b64decode(frame["payload"])
        else:
            self.payload = frame["payload"].encode()

    @property
    def text(self):
        return self.payload.decode("utf-8", errors="replace")

    def json(self):
        return json.loads(self.payload)


# What json.dumps raises for a value JSON cannot carry: NaN or infinity (ValueError), a
# cycle (ValueError), bytes or another type (TypeError), nesting too deep (RecursionError).
_UNENCODABLE = (TypeError, ValueError, RecursionError)


def _encode(frame):
    """The frame's body: strict JSON (``allow_nan=False``), so no frame carries NaN."""
    return json.dumps(frame, separators=(",", ":"), allow_nan=False).encode()


def _encode_error(call_id, error_type, message, trace=None):
    """A failed ``result``; its texts are strings, and ``repr`` stands in for anything else."""
    error = {"type": error_type, "message": message}
    if trace is not None:
        error["traceback"] = trace
    reply = {"type": "result", "id": call_id, "ok": False, "error": error}
    return json.dumps(reply, separators=(",", ":"), default=repr).encode()


class Worker:
    """A language worker: register with ``function``/``subscribe``, then ``run()``."""

    def __init__(self, concurrency=None, socket_path=None, name=None, instance=None,
                 reconnect_timeout=10.0):
        self.concurrency = concurrency or int(os.environ.get("GATEWAY_CONCURRENCY", "8"))
        self.socket_path = socket_path or os.environ.get("GATEWAY_SOCKET")
        self.name = name or os.environ.get("GATEWAY_WORKER", "worker")
        self.instance = int(instance if instance is not None else os.environ.get("GATEWAY_INSTANCE", "0"))
        self.reconnect_timeout = reconnect_timeout
        self.max_frame = 16 * 1024 * 1024
        self._functions = {}
        self._subscriptions = {}
        self._sock = None
        self._reader = None
        self._write_lock = threading.Lock()
        self._pending = {}
        self._pending_lock = threading.Lock()
        self._next_id = 0
        self._running = {}
        self._local = threading.local()
        self._stopping = threading.Event()
        self._executor = None

    # Registration ---------------------------------------------------------

    def function(self, name_or_fn=None):
        """Registers a function, as ``@worker.function`` or ``@worker.function("name")``.

        The function takes ``(args)`` or ``(args, ctx)`` and returns anything JSON
        can encode; what it raises is sent to the caller with its traceback. A
        result JSON cannot carry (NaN, infinity, bytes, a cycle, an object of
        another type) fails that call with the error type ``bad_result``.
        """
        def register(fn, name):
            takes_ctx = len(inspect.signature(fn).parameters) >= 2
            self._functions[name] = (fn, takes_ctx)
            return fn

        if callable(name_or_fn):
            return register(name_or_fn, name_or_fn.__name__)
        return lambda fn: register(fn, name_or_fn or fn.__name__)

    def subscribe(self, topic_filter):
        """Decorator: ``handler(event)`` gets every bus message matching ``topic_filter``."""
        def register(handler):
            self._subscriptions[topic_filter] = handler
            if self._sock is not None:
                self._send({"type": "subscribe", "filter": topic_filter})
            return handler
        return register

    def unsubscribe(self, topic_filter):
        """Removes a subscription."""
        if self._subscriptions.pop(topic_filter, None) and self._sock is not None:
            self._send({"type": "unsubscribe", "filter": topic_filter})

    # Calls out, publishing, logging ----------------------------------------

    def call(self, function, args=None, timeout=None, meta=None):
        """Calls ``function`` (``"owner.name"`` or ``"worker:owner.name"``) through the gateway.

        Returns its result or raises ``CallError``; arguments JSON cannot carry
        raise ``CallError`` with the type ``bad_arguments`` before anything is
        sent. Inside a function the timeout is capped by what is left of that
        call's own deadline.
        """
        timeout = 30.0 if timeout is None else float(timeout)
        ctx = getattr(self._local, "ctx", None)
        if ctx is not None:
            timeout = min(timeout, ctx.remaining())
        with self._pending_lock:
            self._next_id += 1
            call_id = f"w{self._next_id}"
        frame = {"type": "call", "id": call_id, "function": function, "args": args,
                 "timeout": int(timeout * 1000), "meta": meta or {}}
        try:
            body = _encode(frame)
        except _UNENCODABLE as error:
            raise CallError("bad_arguments",
                            f"the arguments of {function} cannot be sent as JSON: {error}") from None
        with self._pending_lock:
            waiter = self._pending[call_id] = [threading.Event(), None]
        try:
            self._write(body)
            if not waiter[0].wait(timeout + 0.5):
                self._send({"type": "cancel", "id": call_id})
                raise CallError("timeout", f"{function} did not answer within {timeout:.3f} s")
        finally:
            with self._pending_lock:
                self._pending.pop(call_id, None)
        result = waiter[1]
        if result.get("ok"):
            return result.get("value")
        error = result.get("error") or {}
        raise CallError(error.get("type", "Error"), error.get("message", ""), error.get("traceback"))

    def publish(self, topic, payload, meta=None):
        """Publishes on the bus: bytes as they are, str as UTF-8, anything else as JSON.

        A payload JSON cannot carry raises ``ValueError`` and nothing is sent.
        """
        if isinstance(payload, (bytes, bytearray)):
            body, encoding = base64.b64encode(payload).decode(), "base64"
        elif isinstance(payload, str):
            body, encoding = payload, "utf8"
        else:
            try:
                body = json.dumps(payload, allow_nan=False)
            except _UNENCODABLE as error:
                raise ValueError(
                    f"the payload published on {topic!r} cannot be sent as JSON: {error}") from None
            encoding = "utf8"
        frame = {"type": "publish", "topic": topic, "payload": body, "encoding": encoding}
        if meta:
            frame["meta"] = meta
        self._send(frame)

    def log(self, level, message, **fields):
        """Logs through the gateway's log (level: debug, info, warning, error).

        Fields JSON cannot carry raise ``ValueError`` and nothing is sent.
        """
        try:
            body = _encode({"type": "log", "level": level, "message": message, "fields": fields})
        except _UNENCODABLE as error:
            raise ValueError(f"the fields of log {message!r} cannot be sent as JSON: {error}") from None
        self._write(body)

    # Running --------------------------------------------------------------

    def run(self):
        """Connects, serves until ``stop``/SIGTERM, then exits the process with 0."""
        if not self.socket_path:
            sys.exit("gateway_worker: GATEWAY_SOCKET is not set (is this run by the gateway?)")
        signal.signal(signal.SIGTERM, lambda *_: self._begin_stop())
        sys.stdout.reconfigure(line_buffering=True)
        self._executor = ThreadPoolExecutor(max_workers=self.concurrency,
                                            thread_name_prefix="gateway-call")
        self._connect(time.monotonic() + self.reconnect_timeout)
        while True:
            try:
                self._serve()
            except (OSError, EOFError, ValueError) as error:
                if self._stopping.is_set():
                    break
                print(f"gateway_worker: connection lost ({error}); reconnecting", file=sys.stderr,
                      flush=True)
                self._close_socket()
                self._connect(time.monotonic() + self.reconnect_timeout)
        self._executor.shutdown(wait=True)
        self._close_socket()
        sys.exit(0)

    def _connect(self, give_up_at):
        delay = 0.05
        while True:
            try:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.connect(self.socket_path)
                break
            except OSError as error:
                sock.close()
                if time.monotonic() + delay > give_up_at:
                    sys.exit(f"gateway_worker: cannot connect to {self.socket_path}: {error}")
                time.sleep(delay)
                delay = min(delay * 2, 1.0)
        self._sock = sock
        self._reader = sock.makefile("rb")
        self._send({
            "type": "hello", "protocol": PROTOCOL, "worker": self.name,
            "instance": self.instance, "pid": os.getpid(),
            # The gateway gives each instance it spawns a secret; without it the hello is refused.
            "secret": os.environ.get("GATEWAY_SECRET", ""),
            "functions": sorted(self._functions), "subscriptions": sorted(self._subscriptions),
            "concurrency": self.concurrency, "codecs": ["json"],
        })
        welcome = self._read()
        if welcome.get("type") == "error":
            sys.exit(f"gateway_worker: the gateway refused this worker: {welcome.get('message')}")
        if welcome.get("type") != "welcome":
            sys.exit(f"gateway_worker: expected welcome, got {welcome.get('type')!r}")
        self.max_frame = welcome.get("maxFrame", self.max_frame)

    def _serve(self):
        while True:
            frame = self._read()
            kind = frame.get("type")
            if kind == "call":
                ctx = Context(frame["id"], frame.get("timeout"), frame.get("meta"))
                self._running[frame["id"]] = ctx
                try:
                    self._executor.submit(self._run_call, frame, ctx)
                except RuntimeError:  # stopping: the pool takes no more work
                    self._send({"type": "result", "id": frame["id"], "ok": False, "error": {
                        "type": "stopping", "message": f"{self.name} is stopping"}})
            elif kind == "result":
                with self._pending_lock:
                    waiter = self._pending.get(frame.get("id"))
                if waiter is not None:
                    waiter[1] = frame
                    waiter[0].set()
            elif kind == "ping":
                self._send({"type": "pong", "id": frame.get("id")})
            elif kind == "event" and not self._stopping.is_set():
                self._executor.submit(self._run_event, frame)
            elif kind == "cancel":
                ctx = self._running.get(frame.get("id"))
                if ctx is not None:
                    ctx.cancelled.set()
            elif kind == "stop":
                self._begin_stop()
            elif kind == "error":
                print(f"gateway_worker: gateway error: {frame.get('message')}", file=sys.stderr,
                      flush=True)

    def _begin_stop(self):
        """Stops taking work; once the calls in flight are answered, closes the socket."""
        if self._stopping.is_set():
            return
        self._stopping.set()

        def finish():
            self._executor.shutdown(wait=True)
            self._close_socket()

        threading.Thread(target=finish, daemon=True).start()

    def _run_call(self, frame, ctx):
        call_id = frame["id"]
        name = frame.get("function")
        entry = self._functions.get(name)
        self._local.ctx = ctx
        try:
            if entry is None:
                raise LookupError(f"{self.name} has no function {name!r}")
            fn, takes_ctx = entry
            value = fn(frame.get("args"), ctx) if takes_ctx else fn(frame.get("args"))
        except Exception as error:  # the caller gets it, with the traceback
            body = _encode_error(call_id, type(error).__name__, str(error), traceback.format_exc())
        else:
            try:
                body = _encode({"type": "result", "id": call_id, "ok": True, "value": value})
            except _UNENCODABLE as error:
                body = _encode_error(
                    call_id, "bad_result",
                    f"{self.name}.{name} returned a value JSON cannot carry: {error}")
        finally:
            self._local.ctx = None
            self._running.pop(call_id, None)
        if not ctx.cancelled.is_set():
            self._write(body)

    def _run_event(self, frame):
        handler = self._subscriptions.get(frame.get("filter"))
        if handler is None:
            return
        try:
            handler(Event(frame))
        except Exception:
            print(f"gateway_worker: subscription {frame.get('filter')!r} failed on "
                  f"{frame.get('topic')!r}:\n{traceback.format_exc()}", file=sys.stderr, flush=True)

    # Frames ----------------------------------------------------------------

    def _read(self):
        reader = self._reader
        header = reader.read(4)
        if len(header) < 4:
            raise EOFError("the gateway closed the connection")
        (length,) = _HEADER.unpack(header)
        if length > self.max_frame:
            raise ValueError(f"frame of {length} bytes exceeds the maximum {self.max_frame}")
        body = reader.read(length)
        if len(body) < length:
            raise EOFError("the gateway closed the connection in the middle of a frame")
        return json.loads(body)

    def _send(self, frame):
        self._write(_encode(frame))

    def _write(self, body):
        sock = self._sock
        if sock is None:
            return
        try:
            with self._write_lock:
                sock.sendall(_HEADER.pack(len(body)) + body)
        except OSError:
            pass  # the reader sees the broken connection and reconnects

    def _close_socket(self):
        sock, self._sock = self._sock, None
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()
