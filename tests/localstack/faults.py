"""Fault injection shared by the simulators: a share of throttling/5xx answers, added latency, dropped
connections (half of them after the request took effect, the nastiest case for idempotency)."""
from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, field


@dataclass
class Faults:
    error_rate: float = 0.0      # share of requests answered 429 / 5xx without effect
    drop_rate: float = 0.0       # share of requests whose connection is dropped (half after the effect)
    latency_ms: tuple = (0, 0)   # added latency, uniform in [lo, hi]
    seed: int = 7
    _rng: random.Random = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    injected: dict = field(default_factory=dict)

    def __post_init__(self):
        self._rng = random.Random(self.seed)

    def decide(self, statuses=(429, 503)):
        """None (serve normally), ("status", code), ("drop-before",) or ("drop-after",)."""
        with self._lock:
            lo, hi = self.latency_ms
            delay = self._rng.uniform(lo, hi) / 1000 if hi else 0
            x = self._rng.random()
            if x < self.error_rate:
                out = ("status", self._rng.choice(statuses))
            elif x < self.error_rate + self.drop_rate:
                out = (self._rng.choice(["drop-before", "drop-after"]),)
            else:
                out = None
            if out:
                k = out[0] if out[0] != "status" else str(out[1])
                self.injected[k] = self.injected.get(k, 0) + 1
        if delay:
            time.sleep(delay)
        return out
