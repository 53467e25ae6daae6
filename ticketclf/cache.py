"""The on-disk cache of LLM answers, over diskcache.

Values are JSON (diskcache's JSONDisk: its default pickling runs code from a tampered cache,
CVE-2025-69872), the directory is 0700, the size is bounded (least recently stored go
first). The cache can only ever make a run cheaper: any error while opening, reading or
writing it (locked, corrupt, unwritable, disk full) is logged once and turns the cache off
for the rest of the run, so every lookup after it is a miss.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import sqlite3
import stat
from collections import Counter
from collections.abc import Iterable, Mapping
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import diskcache

from .errors import ConfigError

log = logging.getLogger("ticketclf.cache")

DEFAULT_SIZE_LIMIT = 1 << 30  # 1 GiB: millions of answers of ~200 bytes
# SQLite busy timeout: long enough for a concurrent shard's write, short enough that a
# stuck lock costs seconds, not the default minute.
LOCK_TIMEOUT_SECONDS = 5.0


def answer_key(backend: str, prompt_version: str, prompt_hash: str, model: str,
               redacted_text: str) -> str:
    """The cache key: who answers (backend and model), the prompt (version and hash), and a
    hash of the redacted text."""
    digest = hashlib.sha256(redacted_text.encode("utf-8", "surrogatepass")).hexdigest()
    return f"{backend}:{prompt_version}:{prompt_hash}:{model}:{digest}"


@dataclass
class CacheStats:
    directory: str
    entries: int
    bytes: int
    size_limit: int
    # entries per "backend:prompt version:hash:model", so stale prompt versions show
    by_prompt_and_model: Counter[str] = field(default_factory=Counter)


class AnswerCache:
    """JSON values by string key; errors become misses (and one warning)."""

    def __init__(self, directory: Path, size_limit: int = DEFAULT_SIZE_LIMIT) -> None:
        self.directory = directory
        self.size_limit = size_limit
        self._cache: diskcache.Cache | None = None
        self.error: str | None = None  # the first error, once the cache has failed
        try:
            _private_directory(directory)
            _wait_for_writers(directory)
            self._cache = diskcache.Cache(
                str(directory), disk=diskcache.JSONDisk, size_limit=size_limit,
                timeout=LOCK_TIMEOUT_SECONDS, eviction_policy="least-recently-stored")
        except Exception as exc:  # noqa: BLE001 - a cache that cannot open is no cache
            self._fail("open", exc)

    def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        """The cached values of those keys that have one."""
        if self._cache is None:
            return {}
        found: dict[str, Any] = {}
        try:
            for key in keys:
                value = self._cache.get(key)
                if value is not None:
                    found[key] = value
        except Exception as exc:  # noqa: BLE001 - see the module docstring
            self._fail("read", exc)
            return {}
        return found

    def put_many(self, items: Mapping[str, Any]) -> None:
        """Store all items in one transaction (one fsync, not one per answer)."""
        if self._cache is None or not items:
            return
        try:
            with self._cache.transact():
                for key, value in items.items():
                    self._cache.set(key, value)
        except Exception as exc:  # noqa: BLE001 - see the module docstring
            self._fail("write", exc)

    def stats(self) -> CacheStats:
        cache = self._require()
        by_prompt_and_model: Counter[str] = Counter(
            str(key).rsplit(":", 1)[0] for key in cache.iterkeys())
        return CacheStats(str(self.directory), len(cache), cache.volume(), self.size_limit,
                          by_prompt_and_model)

    def clear(self) -> int:
        """Remove every entry; returns how many there were."""
        return int(self._require().clear())

    def close(self) -> None:
        if self._cache is not None:
            try:
                self._cache.close()
            except Exception as exc:  # noqa: BLE001 - see the module docstring
                self._fail("close", exc)
            self._cache = None

    def __enter__(self) -> AnswerCache:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _require(self) -> diskcache.Cache:
        """For the `cache` commands, which exist to touch the cache: errors are errors."""
        if self._cache is None:
            raise ConfigError(f"cannot use the cache at {self.directory}: {self.error}",
                              "check the directory's owner and permissions, or --cache-dir")
        return self._cache

    def _fail(self, action: str, exc: Exception) -> None:
        if self.error is None:
            self.error = f"{type(exc).__name__}: {exc}"
            log.warning("cache %s failed; continuing without the cache", action, extra={
                "event": "cache_error", "action": action, "directory": str(self.directory),
                "error": self.error})
        cache, self._cache = self._cache, None
        if cache is not None:
            with contextlib.suppress(Exception):  # already failed and reported
                cache.close()


def _private_directory(directory: Path) -> None:
    """Create the directory as 0700, or tighten it to 0700 if it is ours and wider."""
    directory.parent.mkdir(parents=True, exist_ok=True)
    try:
        directory.mkdir(mode=0o700)
    except FileExistsError:
        if not directory.is_dir():
            raise NotADirectoryError(f"{directory} is not a directory") from None
        st = directory.stat()
        if stat.S_IMODE(st.st_mode) & 0o077 and st.st_uid == os.getuid():
            directory.chmod(0o700)


def _wait_for_writers(directory: Path) -> None:
    """Raise if another process holds the write lock for longer than LOCK_TIMEOUT_SECONDS.
    diskcache's own open retries a locked database for a fixed minute."""
    db = directory / diskcache.core.DBNAME
    if db.exists():
        with closing(sqlite3.connect(db, timeout=LOCK_TIMEOUT_SECONDS,
                                     isolation_level=None)) as conn:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("ROLLBACK")
