"""What keeps the LLM step within bounds: retries with backoff, a request rate, a budget of
requests and a circuit breaker. All are shared by the worker threads, hence the locks."""

from __future__ import annotations

import email.utils
import random
import threading
import time
from dataclasses import dataclass


def retry_after_seconds(value: str | None) -> float | None:
    """A Retry-After header's wait (delta-seconds or an HTTP date) in seconds, if any."""
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(when.timestamp() - time.time(), 0.0)


@dataclass(frozen=True)
class RetryPolicy:
    """`attempts` includes the first request; delays grow exponentially, with jitter so that
    the workers that hit the same 429 do not come back at the same instant."""

    attempts: int = 4
    initial_delay: float = 1.0
    max_delay: float = 30.0
    # The longest wait a server may ask for (Retry-After, RetryInfo) that a run accepts:
    # asked for longer, the ticket gives up at once rather than hold the run.
    max_server_delay: float = 60.0

    def delay(self, retry: int, asked: float | None = None) -> float | None:
        """Seconds to wait before retry number `retry` (1 for the first retry): what the
        server asked for, when it did, else exponential backoff; None: do not retry."""
        if asked is not None:
            return max(asked, 0.0) if asked <= self.max_server_delay else None
        ceiling = min(self.max_delay, self.initial_delay * 2 ** (retry - 1))
        return random.uniform(ceiling / 2, ceiling)


class RateLimiter:
    """Spaces request starts evenly so that no minute sees more than `per_minute`."""

    def __init__(self, per_minute: float | None) -> None:
        self.interval = 60.0 / per_minute if per_minute else 0.0
        self._next = 0.0
        self._lock = threading.Lock()

    def wait(self, stop: threading.Event) -> bool:
        """Block until this caller may send; False when `stop` was set meanwhile."""
        if not self.interval:
            return not stop.is_set()
        with self._lock:
            now = time.monotonic()
            slot = max(now, self._next)
            self._next = slot + self.interval
        return not stop.wait(slot - now) if slot > now else not stop.is_set()


class Budget:
    """At most `limit` requests in a run (None: no limit); retries count, they are requests."""

    def __init__(self, limit: int | None) -> None:
        self.limit = limit
        self.used = 0
        self._lock = threading.Lock()

    def take(self) -> bool:
        with self._lock:
            if self.limit is not None and self.used >= self.limit:
                return False
            self.used += 1
            return True


class CircuitBreaker:
    """Opens after `threshold` consecutive failed tickets and stays open for the run: when
    the service is down, every further call would only add minutes of timeouts and retries."""

    def __init__(self, threshold: int) -> None:
        self.threshold = threshold
        self._consecutive = 0
        self._open = False
        self._lock = threading.Lock()

    @property
    def is_open(self) -> bool:
        return self._open

    def record(self, failed: bool) -> bool:
        """Count one outcome; True exactly when this failure opened the breaker."""
        with self._lock:
            if not failed:
                self._consecutive = 0
                return False
            self._consecutive += 1
            if not self._open and self._consecutive >= self.threshold:
                self._open = True
                return True
            return False
