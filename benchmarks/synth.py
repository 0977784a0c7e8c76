"""Benchmark the synthetic corpus writer: samples/s of render + JPEG encode + shard write, on one core.

The goal is at least 500 samples/s at 64 px in one process. Each size writes a fresh corpus of train samples
(default noise) into a temporary folder, so the figure includes the warm-up of the mask and texture caches.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import tempfile

from mug.data.synthetic.corpus import synthesize_corpus

GOAL_64PX = 500.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=5000, help="train samples per image size")
    parser.add_argument("--sizes", default="64,224", help="comma-separated image sizes in pixels")
    parser.add_argument("--profile", action="store_true", help="print the 15 costliest functions per size")
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core, whatever the machine has
    for size in (int(s) for s in args.sizes.split(",")):
        with tempfile.TemporaryDirectory() as out:
            profiler = cProfile.Profile() if args.profile else None
            if profiler:
                profiler.enable()
            summary = synthesize_corpus(out, args.samples, 0, image_size=size, progress=False)
            if profiler:
                profiler.disable()
            megabytes = sum(f.stat().st_size for f in os.scandir(os.path.join(out, "train"))) / 2**20
        goal = f"  (goal >= {GOAL_64PX:.0f})" if size == 64 else ""
        rate = f"{summary.samples_per_s:7.0f} samples/s, {summary.seconds:6.2f} s"
        print(f"{size:4d} px: {rate}, {megabytes:6.1f} MiB of shards{goal}")
        if profiler:
            pstats.Stats(profiler).sort_stats("tottime").print_stats(15)


if __name__ == "__main__":
    main()
