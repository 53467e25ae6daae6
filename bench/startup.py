"""Start-up time of the commands people run by hand, against the imports they cannot avoid.

  python bench/startup.py [--rounds 7] [--markdown]

Both sides of each ratio are measured in this run, interleaved, each a fresh process; the
figure is the median of the rounds. Targets (issue 12):
  `ticketclf --help`        <= 4 x  python -c "import typer, rich.console, rich.table"
  `ticketclf predict TEXT`  <= 1.5 x python -c "import numpy, sklearn.linear_model"
Exits 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TICKETCLF = [sys.executable, "-m", "ticketclf"]
CASES = {
    "help": (TICKETCLF + ["--help"],
             [sys.executable, "-c", "import typer, rich.console, rich.table"], 4.0),
    "predict": (TICKETCLF + ["predict", "my bill doubled this month and nobody answers"],
                [sys.executable, "-c", "import numpy, sklearn.linear_model"], 1.5),
}


def seconds(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, cwd=ROOT)
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    missed = 0
    rows = []
    for name, (command, baseline, target) in CASES.items():
        seconds(command)  # warm the page cache and the bytecode
        ours, base = [], []
        for _ in range(args.rounds):
            ours.append(seconds(command))
            base.append(seconds(baseline))
        ratio = statistics.median(ours) / statistics.median(base)
        missed += ratio > target
        rows.append((name, statistics.median(ours), statistics.median(base), ratio, target))
    if args.markdown:
        print("| command | seconds | baseline seconds | ratio | target |")
        print("|---|---|---|---|---|")
        for name, ours_s, base_s, ratio, target in rows:
            print(f"| `{name}` | {ours_s:.3f} | {base_s:.3f} | {ratio:.2f}x | <= {target}x |")
    else:
        for name, ours_s, base_s, ratio, target in rows:
            print(f"{name}: {ours_s:.3f} s vs {base_s:.3f} s baseline = {ratio:.2f}x "
                  f"(target <= {target}x)")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
