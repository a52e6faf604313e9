"""Lambda Runtime API hosts: run the real release binary and hand it invocations.

`FunctionHost` is one execution environment: the endpoints lambda_runtime uses (2018-06-01: GET
invocation/next (long poll), POST invocation/{id}/response, POST invocation/{id}/error, POST runtime/init/error)
on a port of its own, and one process, which serves one invocation at a time. A crashed or killed process fails
its in-flight invocation (as Lambda reports a runtime exit) and is started again at once, as Lambda replaces
the environment.

`FunctionPool` is one function: up to `size` FunctionHosts, started on demand (a cold start when every started
one is busy), as Lambda scales a function out to the concurrency its event source asks for.
"""
from __future__ import annotations

import json
import os
import queue
import threading
import time
import uuid

from .util import QuietHandler, Server, close_all, cpu_seconds, percentiles, spawn, stop

PREFIX = "/2018-06-01"


class InvocationError(Exception):
    """The function returned an error or its runtime died: the event source treats the batch as failed."""


class _Invocation:
    def __init__(self, event, deadline_ms):
        self.id = str(uuid.uuid4())
        # X-Ray's format: Root=1-<epoch seconds, hex>-<96 random bits>;Parent=<segment>;Sampled=1
        self.trace_id = f"Root=1-{int(time.time()):08x}-{uuid.uuid4().hex[:24]};Parent={uuid.uuid4().hex[:16]};Sampled=1"
        self.event = event
        self.deadline_ms = deadline_ms
        self.done = threading.Event()
        self.result = None
        self.error = None
        self.taken_at = None  # when the process asked for it (GET invocation/next)


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
                "Lambda-Runtime-Trace-Id": inv.trace_id,
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
        self.error_kinds: dict[str, int] = {}  # "timed out", "runtime exited", "function error"
        self.durations_ms: list[int] = []  # of every invocation, from hand-over to answer (or failure)
        self.cpu_s = 0.0  # CPU seconds of the processes that ended (restarts); `cpu()` adds the live one's
        self._cpu_live = 0.0
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
        self.cpu_s += self._cpu_live
        self._cpu_live = 0.0
        out = self._log if self._log else open(os.devnull, "wb")
        self.proc = spawn([self.binary], env=self.env, stdout=out, stderr=out, stdin=open(os.devnull, "rb"))

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def _sample_cpu(self):
        if self.alive():  # a reaped process's pid may be reused
            c = cpu_seconds(self.proc.pid)
            if c is not None:
                self._cpu_live = c

    def cpu(self) -> float:
        """CPU seconds used by this environment's processes so far (a killed process's last sample)."""
        self._sample_cpu()
        return self.cpu_s + self._cpu_live

    def _take(self):
        while not self._closed:
            try:
                inv = self._pending.get(timeout=0.5)
            except queue.Empty:
                continue
            inv.taken_at = time.time()
            return inv
        return None

    def invoke(self, event) -> dict:
        """Synchronous invocation; raises InvocationError on a function error, timeout or runtime exit."""
        with self._lock:
            if not self.alive():
                self._restart()
            self.invocations += 1
            inv = _Invocation(event, int((time.time() + self.timeout_s) * 1000))
            self._inflight[inv.id] = inv
            self._pending.put(inv)
            # Armed until it has killed one invocation that made a downstream call.
            kill = self.kill_next_mid_batch > 0
            killed = False
            started = time.time()
            try:
                end = started + self.timeout_s + 1
                base = self.kill_probe() if self.kill_probe else None
                while killed or not inv.done.wait(0.002 if kill else 0.05):
                    if kill and self._pending.empty() and not inv.done.is_set():
                        # Kill it once it has sent its first downstream request: mid-batch, effects half done.
                        if (self.kill_probe() > base) if self.kill_probe else True:
                            kill, killed = False, True
                            self.kill_next_mid_batch -= 1
                            self.kills += 1
                            self.proc.kill()
                            self.proc.wait()
                    if not self.alive():
                        # (A killed invocation fails even if its answer slipped out just before.)
                        self._drain_pending(inv)
                        self.proc.wait()
                        self._error("runtime exited")
                        status = self.proc.poll()
                        self._restart()  # Lambda starts a new execution environment
                        raise InvocationError(f"{self.name}: runtime exited (status {status})")
                    if time.time() > end:
                        # (Told apart: a function that hangs, and a process that never asked for its invocation.)
                        taken = inv.taken_at is not None
                        self._error("timed out" if taken else "timed out before pick-up")
                        stop(self.proc, 1)  # Lambda freezes and discards a timed-out environment
                        self._drain_pending(inv)
                        self._restart()
                        raise InvocationError(f"{self.name}: task timed out after {self.timeout_s} s"
                                              + (f" (picked up after {inv.taken_at - started:.1f} s)" if taken
                                                 else " (the process never asked for it)"))
                if inv.error is not None:
                    self._error("function error")
                    raise InvocationError(f"{self.name}: {inv.error[:300]}")
                return inv.result
            finally:
                self._inflight.pop(inv.id, None)
                self.durations_ms.append(int((time.time() - started) * 1000))
                self._sample_cpu()

    def _restart(self):
        if not self._closed:
            self.restarts += 1
            self._start()

    def _error(self, kind: str):
        self.errors += 1
        self.error_kinds[kind] = self.error_kinds.get(kind, 0) + 1

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
            self._sample_cpu()
            stop(self.proc)
        self.server.close()
        if self._log:
            self._log.close()


class FunctionPool:
    """One function with up to `size` concurrent execution environments (FunctionHosts), started on demand.

    `invoke` takes an idle environment (the most recently used: warm), else starts a new one while fewer than
    `size` exist, else waits for one to finish (the event sources never ask for more than their concurrency).
    `env_for(i)` adds environment variables for the i-th environment (its own simulator listeners, say) and
    `probe_for(i)` gives its kill probe: a counter of the downstream calls that environment made.
    `arm_kill()` schedules one kill: the next invocation that makes a downstream call is killed mid-batch, in one
    environment; that environment's process is started again for its next invocation (as Lambda does)."""

    def __init__(self, name: str, binary: str, env: dict, timeout_s: float, *, size: int = 1,
                 log_path: str | None = None, env_for=None, probe_for=None):
        self.name, self.binary, self.env, self.timeout_s = name, binary, env, timeout_s
        self.size = max(1, size)
        self.log_path = log_path
        self.env_for = env_for or (lambda i: {})
        self.probe_for = probe_for
        self.hosts: list[FunctionHost] = []
        self._idle: list[FunctionHost] = []
        self._starting = 0
        self._cond = threading.Condition()
        self._kills_armed = 0
        self._closed = False
        self.busy = 0
        self.peak = 0  # most invocations in flight at once

    def _new_host(self, i: int) -> FunctionHost:
        host = FunctionHost(self.name, self.binary, {**self.env, **self.env_for(i)}, self.timeout_s,
                            log_path=self.log_path)
        host.index = i
        if self.probe_for is not None:
            host.kill_probe = self.probe_for(i)
        return host

    def _acquire(self) -> FunctionHost:
        with self._cond:
            while True:
                if self._closed:
                    raise InvocationError(f"{self.name}: shutting down")
                if self._idle:
                    host = self._idle.pop()
                    break
                if len(self.hosts) + self._starting < self.size:
                    index = len(self.hosts) + self._starting
                    self._starting += 1
                    host = None
                    break
                self._cond.wait()
            self.busy += 1
            self.peak = max(self.peak, self.busy)
        if host is None:  # a cold start, outside the lock
            try:
                host = self._new_host(index)
            except BaseException:
                with self._cond:
                    self._starting -= 1
                    self.busy -= 1
                    self._cond.notify()
                raise
            with self._cond:
                self._starting -= 1
                self.hosts.append(host)
        with self._cond:
            if self._kills_armed and not host.kill_next_mid_batch:
                self._kills_armed -= 1
                host.kill_next_mid_batch = 1
        return host

    def _release(self, host: FunctionHost):
        with self._cond:
            self.busy -= 1
            # An armed environment whose invocation made no downstream call hands the kill on to the next one.
            self._kills_armed += host.kill_next_mid_batch
            host.kill_next_mid_batch = 0
            self._idle.append(host)
            self._cond.notify()

    def invoke(self, event) -> dict:
        host = self._acquire()
        try:
            return host.invoke(event)
        finally:
            self._release(host)

    def arm_kill(self, n: int = 1):
        with self._cond:
            self._kills_armed += n

    def _sum(self, attr):
        return sum(getattr(h, attr) for h in list(self.hosts))

    @property
    def invocations(self):
        return self._sum("invocations")

    @property
    def errors(self):
        return self._sum("errors")

    @property
    def kills(self):
        return self._sum("kills")

    @property
    def restarts(self):
        return self._sum("restarts")

    @property
    def init_errors(self):
        return [e for h in list(self.hosts) for e in h.init_errors]

    def cpu(self) -> float:
        return sum(h.cpu() for h in list(self.hosts))

    def error_kinds(self) -> dict:
        out: dict[str, int] = {}
        for h in list(self.hosts):
            for k, n in h.error_kinds.items():
                out[k] = out.get(k, 0) + n
        return out

    def figures(self) -> dict:
        d = percentiles([ms for h in list(self.hosts) for ms in h.durations_ms], (50, 99, 100))
        return {"invocations": self.invocations, "errors": self.errors, **self.error_kinds(), "killed": self.kills,
                "restarts": self.restarts, "instances": len(self.hosts), "limit": self.size,
                "peak_concurrent": self.peak, "duration_ms_p50_p99_max": [d[50], d[99], d[100]],
                "per_instance": [h.invocations for h in sorted(self.hosts, key=lambda h: h.index)]}

    def close(self):
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        close_all([h.close for h in list(self.hosts)])
