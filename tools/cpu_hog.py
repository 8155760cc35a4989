"""Keep every CPU core busy, to run the test suite under load:

    python tools/cpu_hog.py --seconds 3600 &   # one busy process per core
    make test
    kill %1

Tests must pass on a busy machine too: nothing may depend on thread or socket timing.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import time


def spin(until: float) -> None:
    x = 0
    while time.monotonic() < until:
        for _ in range(100_000):
            x = (x * 1_103_515_245 + 12_345) & 0x7FFFFFFF


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3600.0, help="How long to keep the cores busy.")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="Busy processes (default: one per core).")
    args = parser.parse_args()
    until = time.monotonic() + args.seconds
    workers = [mp.Process(target=spin, args=(until,), daemon=True) for _ in range(args.workers)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()


if __name__ == "__main__":
    main()
