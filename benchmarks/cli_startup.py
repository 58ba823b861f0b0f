"""Start-up time of `ppad --help`: lazy command loading vs importing every command up front.

Run: python benchmarks/cli_startup.py [--repeats 5]

Both are fresh interpreters; the eager reference imports every command module (what the CLI
did before commands were loaded by name) and then prints the same help.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

from ppad.cli.main import COMMANDS

PEAK = "import resource, sys; sys.stderr.write(str(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss))"
LAZY = "from ppad.cli.main import cli; cli(['--help'], standalone_mode=False); " + PEAK
EAGER = "import importlib; " + "; ".join(f"importlib.import_module({m!r})" for m, _ in COMMANDS.values()) + "; " + LAZY


def measure(code: str, repeats: int) -> tuple[float, float]:
    """Median wall seconds and peak resident memory (MiB) of a fresh interpreter running ``code``."""
    times, peaks = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        done = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
        times.append(time.perf_counter() - start)
        peaks.append(int(done.stderr.strip().splitlines()[-1]) / 1024)
    return statistics.median(times), max(peaks)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    (lazy, lazy_mib), (eager, eager_mib) = measure(LAZY, args.repeats), measure(EAGER, args.repeats)
    print(f"ppad --help, lazy commands:       {lazy:.3f} s, peak RSS {lazy_mib:.0f} MiB (median of {args.repeats})")
    print(f"ppad --help, every command eager: {eager:.3f} s, peak RSS {eager_mib:.0f} MiB")
    print(f"ratio eager / lazy: {eager / lazy:.1f}× time, {eager_mib / lazy_mib:.1f}× memory")


if __name__ == "__main__":
    main()
