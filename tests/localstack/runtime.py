"""A Lambda Runtime API host per function: runs the real release binary and hands it invocations.

Implements the endpoints lambda_runtime uses (2018-06-01): GET invocation/next (long poll), POST
invocation/{id}/response, POST invocation/{id}/error, POST runtime/init/error. One process = one concurrent
invocation, as in one Lambda execution environment. A crashed or killed process fails its in-flight invocation
(as Lambda reports a runtime exit) and is restarted for the next one.
"""
from __future__ import annotations

import json
import os
import queue
import threading
import time
import uuid

from .util import QuietHandler, Server, spawn, stop

PREFIX = "/2018-06-01"


class InvocationError(Exception):
    """The function returned an error or its runtime died: the event source treats the batch as failed."""


class _Invocation:
    def __init__(self, event, deadline_ms):
        self.id = str(uuid.uuid4())
        self.event = event
        self.deadline_ms = deadline_ms
        self.done = threading.Event()
        self.result = None
        self.error = None


class _Handler(QuietHandler):
    def do_GET(self):
        host: "FunctionHost" = self.server.host
        if self.path != f"{PREFIX}/runtime/invocation/next":
            return self.send(404, {"error": "unknown path"})
        inv = host._take()
        if inv is None:  # shutting down
            return self.drop()
        body = json.dumps(inv.event).encode()
        self.send(
            200,
            body,
            {
                "Lambda-Runtime-Aws-Request-Id": inv.id,
                "Lambda-Runtime-Deadline-Ms": str(inv.deadline_ms),
                "Lambda-Runtime-Invoked-Function-Arn": f"arn:aws:lambda:us-east-1:123456789012:function:{host.name}",
                "Lambda-Runtime-Trace-Id": f"Root=1-{inv.id[:8]}",
            },
        )

    def do_POST(self):
        host: "FunctionHost" = self.server.host
        body = self.read_body()
        parts = self.path[len(PREFIX):].strip("/").split("/")
        if parts[:2] == ["runtime", "init"]:
            host.init_errors.append(body.decode(errors="replace"))
            return self.send(202, {"status": "OK"})
        if len(parts) == 4 and parts[:2] == ["runtime", "invocation"]:
            inv = host._inflight.get(parts[2])
            if inv is None:
                return self.send(400, {"errorMessage": "unknown request id"})
            if parts[3] == "response":
                try:
                    inv.result = json.loads(body) if body else None
                except ValueError:
                    inv.error = "response is not JSON"
            else:
                inv.error = body.decode(errors="replace") or "function error"
            inv.done.set()
            return self.send(202, {"status": "OK"})
        self.send(404, {"error": "unknown path"})


class FunctionHost:
    """Runs `binary` with `env` under a private Runtime API; `invoke(event)` returns the function's answer."""

    def __init__(self, name: str, binary: str, env: dict, timeout_s: float, log_path: str | None = None):
        self.name = name
        self.binary = binary
        self.timeout_s = timeout_s
        self.init_errors: list[str] = []
        self._pending: queue.Queue = queue.Queue()
        self._inflight: dict[str, _Invocation] = {}
        self._lock = threading.Lock()  # one invocation at a time, as in one execution environment
        self._closed = False
        self.invocations = 0
        self.errors = 0
        self.restarts = 0
        self.kill_next_mid_batch = 0  # number of future invocations to kill while in flight
        self.kill_probe = None  # callable → a counter that grows once the function has made a downstream call
        self.kills = 0
        self.server = Server(_Handler, host=self)
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "AWS_LAMBDA_RUNTIME_API": f"127.0.0.1:{self.server.port}",
            "AWS_LAMBDA_FUNCTION_NAME": name,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "256",
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_LOG_STREAM_NAME": "local",
            "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{name}",
            "AWS_REGION": "us-east-1",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_EC2_METADATA_DISABLED": "true",
            **env,
        }
        self._log = open(log_path, "ab") if log_path else None
        self.proc = None
        self._start()

    def _start(self):
        out = self._log if self._log else open(os.devnull, "wb")
        self.proc = spawn([self.binary], env=self.env, stdout=out, stderr=out, stdin=open(os.devnull, "rb"))

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def _take(self):
        while not self._closed:
            try:
                inv = self._pending.get(timeout=0.5)
            except queue.Empty:
                continue
            return inv
        return None

    def invoke(self, event) -> dict:
        """Synchronous invocation; raises InvocationError on a function error, timeout or runtime exit."""
        with self._lock:
            if not self.alive():
                self.restarts += 1
                self._start()
            self.invocations += 1
            inv = _Invocation(event, int((time.time() + self.timeout_s) * 1000))
            self._inflight[inv.id] = inv
            self._pending.put(inv)
            # Armed until it has killed one invocation that made a downstream call.
            kill = self.kill_next_mid_batch > 0
            try:
                end = time.time() + self.timeout_s + 1
                base = self.kill_probe() if self.kill_probe else None
                started = time.time()
                while not inv.done.wait(0.002 if kill else 0.05):
                    if kill and self._pending.empty():
                        # Kill it once it has sent its first downstream request: mid-batch, effects half done.
                        if (self.kill_probe() > base) if self.kill_probe else True:
                            kill = False
                            self.kill_next_mid_batch -= 1
                            self.kills += 1
                            self.proc.kill()
                    if not self.alive():
                        self._drain_pending(inv)
                        self.proc.wait()
                        self.errors += 1
                        raise InvocationError(f"{self.name}: runtime exited (status {self.proc.poll()})")
                    if time.time() > end:
                        self.errors += 1
                        stop(self.proc, 1)  # Lambda freezes and discards a timed-out environment
                        raise InvocationError(f"{self.name}: task timed out after {self.timeout_s} s")
                if inv.error is not None:
                    self.errors += 1
                    raise InvocationError(f"{self.name}: {inv.error[:300]}")
                return inv.result
            finally:
                self._inflight.pop(inv.id, None)

    def _drain_pending(self, inv):
        # An invocation the dead process never picked up must not be handed to the next process.
        try:
            while True:
                self._pending.get_nowait()
        except queue.Empty:
            pass

    def close(self):
        self._closed = True
        if self.proc is not None:
            stop(self.proc)
        self.server.close()
        if self._log:
            self._log.close()
