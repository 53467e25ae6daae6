"""Memory at scale: a generated input of at least 1 GiB streams through `ticketclf classify`
with about the peak memory of a 50,000-row input.

  python bench/scale.py [--gib 1.0] [--small 50000] [--words 300 500] [--workers N]
  make bench-scale

Both inputs come from bench/run.py's generator with the same text lengths (default 300-500
words, about 2 KB a row, so that 1 GiB needs ~530k rows rather than 5M), so they differ only
in their number of rows. Peak memory is the resident set of the whole classify process tree
(parent and the model workers forked from it), as the sum of PSS (what a cgroup charges;
the sum of RSS, which counts pages shared with the workers once per process, is printed
beside it), sampled every 0.2 s. Target: large / small <= 1.2.
Prints a Markdown section for bench/RESULTS.md and exits 1 when the target is missed.
Not part of `make test`: on 2 cores the 1 GiB run takes about 10-20 minutes.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from run import classify_run, generate  # noqa: E402

GIB = 1 << 30
TARGET_RATIO = 1.2


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        kib = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f", {kib / 2**20:.0f} GiB RAM"
    except (OSError, ValueError, IndexError):
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{cpu}, {cores} cores{mem}, {platform.system()} {platform.release()}, " \
           f"Python {platform.python_version()}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gib", type=float, default=1.0, help="size of the large input")
    parser.add_argument("--small", type=int, default=50_000, help="rows of the small input")
    parser.add_argument("--words", type=int, nargs=2, default=(300, 500), metavar=("MIN", "MAX"))
    parser.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--dir", type=Path, default=None, help="where to generate (default: temp)")
    args = parser.parse_args()
    words = (args.words[0], args.words[1])
    with tempfile.TemporaryDirectory(prefix="ticketclf-scale-", dir=args.dir) as tmp:
        small, large = Path(tmp) / "small.csv", Path(tmp) / "large.csv"
        generate(small, args.small, seed=1, words=words)
        per_row = small.stat().st_size / args.small
        large_rows = math.ceil(args.gib * GIB * 1.01 / per_row)
        started = time.perf_counter()
        generate(large, large_rows, seed=2, words=words)
        gen_s = time.perf_counter() - started
        if large.stat().st_size < args.gib * GIB:
            raise SystemExit(f"generated only {large.stat().st_size:,} bytes")
        sizes = {"small": small.stat().st_size, "large": large.stat().st_size}
        # the large run first: a warm page cache helps the small one, not the other way round
        large_run = classify_run(large, args.workers)
        small_run = classify_run(small, args.workers)
    ratio = large_run.peak_pss_mib / small_run.peak_pss_mib
    print(f"## Memory at scale (`bench/scale.py`)\n\nmachine: {machine()}; workers "
          f"{args.workers}, batch size 1000 (default); texts of {words[0]}-{words[1]} words "
          f"(~{per_row:,.0f} bytes a row); generating the large input took {gen_s:.0f} s.\n")
    print("| input | rows | size | wall time | throughput | peak RSS / PSS (process tree) |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, rows, run in (("small", args.small, small_run), ("large", large_rows, large_run)):
        print(f"| {name} | {rows:,} | {sizes[name] / GIB:.2f} GiB | {run.seconds:,.0f} s | "
              f"{run.rows_per_second:,.0f} rows/s ({sizes[name] / run.seconds / 1e6:.1f} MB/s) "
              f"| {run.peak_rss_mib} / {run.peak_pss_mib} MiB |")
    verdict = "met" if ratio <= TARGET_RATIO else "MISSED"
    print(f"\nPeak PSS large / small: **{ratio:.2f}** (target <= {TARGET_RATIO}: {verdict}).")
    sys.exit(0 if ratio <= TARGET_RATIO else 1)


if __name__ == "__main__":
    main()
