"""What a launcher adds before and after the training itself: a 2-process gloo job that only all-reduces one
number, launched by torchx (`local_cwd`) and by the Kubeflow SDK's local-process backend (`trainjob-local`),
in alternating rounds in this process. Prints the median and range of each launch's wall time.

    .venv/bin/python benchmarks/launch_overhead.py --rounds 3
"""

from __future__ import annotations

import argparse
import contextlib
import io
import statistics
import tempfile
import time
from pathlib import Path

from mug.train.launch import launch
from mug.train.launch_spec import LaunchSpec

WORKER = """
import torch, torch.distributed as dist
dist.init_process_group("gloo")
total = torch.tensor([dist.get_rank()])
dist.all_reduce(total)
dist.destroy_process_group()
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3, help="launches per scheduler (default: %(default)s)")
    args = parser.parse_args()
    times: dict[str, list[float]] = {"local_cwd": [], "trainjob-local": []}
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "allreduce_worker.py").write_text(WORKER)
        for _ in range(args.rounds):
            for scheduler in times:
                spec = LaunchSpec(
                    scheduler=scheduler, nproc_per_node=2, env={"PYTHONPATH": tmp, "OMP_NUM_THREADS": "1"}
                )
                start = time.perf_counter()
                with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                    code = launch([], spec, module="allreduce_worker")
                times[scheduler].append(time.perf_counter() - start)
                if code != 0:
                    raise SystemExit(f"{scheduler}: the job failed with exit code {code}")
    for scheduler, seconds in times.items():
        spread = f"{min(seconds):.1f}-{max(seconds):.1f}, {len(seconds)} launches"
        print(f"{scheduler:15s} {statistics.median(seconds):6.1f} s  ({spread})")
    ratios = [b / a for a, b in zip(times["local_cwd"], times["trainjob-local"], strict=True)]
    print(f"trainjob-local / local_cwd: {statistics.median(ratios):.2f}x ({min(ratios):.2f}-{max(ratios):.2f})")


if __name__ == "__main__":
    main()
