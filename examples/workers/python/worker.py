"""Example Python worker (the default config runs it as worker "python").

Functions: hello (an HTTP route target: GET /hello?name=Ada; logs through the
gateway), echo, add, fail
(raises, to show the traceback a caller gets), sleep (to see deadlines), and
title (calls the PHP example worker's "title" through the gateway; the PHP
worker's name is $PHP_WORKER, default "php"). Every message published on
demo/in/<rest> is republished on demo/out/<rest>.
"""

import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "sdk", "python"))
from gateway_worker import Worker  # noqa: E402

worker = Worker()  # as many threads as the config's concurrency


@worker.function
def hello(request):
    name = request.get("query", {}).get("name", "world") if isinstance(request, dict) else "world"
    worker.log("info", "said hello", name=name)
    return {"hello": name, "from": f"python worker {worker.name}[{worker.instance}] pid {os.getpid()}"}


@worker.function
def echo(args):
    return args


@worker.function
def add(args):
    return args["a"] + args["b"]


@worker.function
def fail(args):
    raise ValueError(f"cannot handle {args!r}")


@worker.function
def sleep(args, ctx):
    seconds = float((args or {}).get("seconds", 1))
    time.sleep(seconds)
    return {"slept": seconds, "cancelled": ctx.cancelled.is_set()}


@worker.function
def title(args):
    php = os.environ.get("PHP_WORKER", "php")
    return {"python": "asked php", "php": worker.call(f"worker:{php}.title", args)}


@worker.subscribe("demo/in/#")
def relay(event):
    worker.publish("demo/out/" + event.topic.split("/", 2)[2], event.payload, {"via": worker.name})


if __name__ == "__main__":
    print(f"example worker {worker.name}[{worker.instance}] starting", flush=True)
    worker.run()
