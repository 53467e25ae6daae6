"""The on-disk cache of LLM answers, over diskcache.

Values are JSON (diskcache's JSONDisk: its default pickling runs code from a tampered cache,
CVE-2025-69872), the directory is 0700, the size is bounded (least recently stored go
first). The cache can only ever make a run cheaper: any error while opening, reading or
writing it (locked, corrupt, unwritable, disk full) is logged once and turns the cache off
for the rest of the run, so every lookup after it is a miss.

Each value is an answer record (`answer_record`): the LLM's answer plus what learning from it
needs — the redacted text it answers (never the original: the escalator redacts before it
keys), who asked (backend, model, prompt version and hash, taxonomy hash) and when. Records
written before texts were kept hold the answer only: still valid answers, not learnable.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import sqlite3
import stat
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
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
CLEAR_CHUNK = 1000  # keys removed per transaction by clear_older_than


def answer_key(backend: str, prompt_version: str, prompt_hash: str, model: str,
               redacted_text: str) -> str:
    """The cache key: who answers (backend and model), the prompt (version and hash), and a
    hash of the redacted text."""
    digest = hashlib.sha256(redacted_text.encode("utf-8", "surrogatepass")).hexdigest()
    return f"{backend}:{prompt_version}:{prompt_hash}:{model}:{digest}"


def answer_record(answer: Mapping[str, Any], redacted_text: str, *, backend: str, model: str,
                  prompt_version: str, prompt_hash: str, taxonomy_hash: str | None,
                  at: float | None = None) -> dict[str, Any]:
    """The cached value for one answer: the answer's fields, then its provenance."""
    return {**answer, "text": redacted_text, "backend": backend, "model": model,
            "prompt_version": prompt_version, "prompt_hash": prompt_hash,
            "taxonomy_hash": taxonomy_hash, "at": round(time.time() if at is None else at, 3)}


@dataclass(frozen=True, slots=True)
class CachedRecord:
    """One cache entry as learning and review see it; `text` is None for old-format entries."""

    key: str
    value: Mapping[str, Any]

    @property
    def text(self) -> str | None:
        text = self.value.get("text")
        return text if isinstance(text, str) else None

    @property
    def text_sha256(self) -> str:
        """The last part of the key: the SHA-256 of the redacted text."""
        return self.key.rsplit(":", 1)[-1]

    @property
    def prompt_hash(self) -> str:
        """From the value, else from the key (old entries): backend:version:hash:model:digest."""
        value = self.value.get("prompt_hash")
        parts = self.key.split(":")
        return str(value) if value else (parts[2] if len(parts) >= 5 else "")

    @property
    def at(self) -> float:
        at = self.value.get("at")
        return float(at) if isinstance(at, int | float) else 0.0


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

    def records(self) -> Iterator[CachedRecord]:
        """Every entry, in the database's order, one at a time (memory stays bounded whatever
        the cache holds). For the commands that read the whole cache (learn, review): errors
        are errors."""
        cache = self._require()
        for key in cache.iterkeys():
            value = cache.get(key)
            if isinstance(value, dict):
                yield CachedRecord(str(key), value)

    def clear(self) -> int:
        """Remove every entry; returns how many there were."""
        return int(self._require().clear())

    def clear_older_than(self, seconds: float, now: float | None = None) -> int:
        """Remove the entries stored more than `seconds` ago; returns how many. By diskcache's
        own store time, which old-format entries have too; in chunks of CLEAR_CHUNK keys, each
        in one transaction, so memory stays bounded."""
        cache = self._require()
        cutoff = (time.time() if now is None else now) - seconds
        removed, last_rowid = 0, 0
        db = self.directory / diskcache.core.DBNAME
        while True:
            # diskcache has no public query by store time: read its table (schema stable since
            # diskcache 4) on a connection of our own, then delete through the public API.
            with closing(sqlite3.connect(db, timeout=LOCK_TIMEOUT_SECONDS)) as conn:
                rows = conn.execute(
                    "SELECT rowid, key, raw FROM Cache WHERE store_time < ? AND rowid > ? "
                    "ORDER BY rowid LIMIT ?", (cutoff, last_rowid, CLEAR_CHUNK)).fetchall()
            if not rows:
                return removed
            last_rowid = rows[-1][0]
            with cache.transact():
                for _rowid, db_key, raw in rows:
                    removed += bool(cache.delete(cache.disk.get(db_key, raw)))

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
