"""Linear probes one after another against one per core (`mug.evaluation.probes.linear_probes`), on real
frozen features: a floor cache entry (`$MUG_CACHE_DIR/floors/*.npz`, written by any `mug evaluate`) and the
labels of the eval shards it was read from. The workload is an evaluation's: per label, the CLS and mean-pooled
probes of the model and of the floor (here the same features twice). Rounds interleave the two ways; prints
seconds per round, medians and the ratio, and checks that both predict the same labels.

    .venv/bin/python benchmarks/probes.py --features ~/.cache/mug/floors/KEY.npz --data data/eval
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from mug.data.loading.loader import LoaderConfig, make_loader
from mug.evaluation.probes import linear_probe, linear_probes, split


def labels_by_key(urls: list[str]) -> dict[str, dict]:
    loader = make_loader(LoaderConfig(urls=urls, batch_size=256, image_size=64, train=False))
    return {key: labels for batch in loader for key, labels in zip(batch["key"], batch["labels"], strict=True)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--features", required=True, help="a floor cache .npz")
    parser.add_argument("--data", nargs="+", required=True, help="the eval shards its features were read from")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with np.load(args.features) as data:
        keys = data["eval/keys"].tolist()
        pools = {name: data[f"eval/{name}"] for name in ("cls", "mean")}
    labels = labels_by_key(args.data)
    tasks = {name: np.array([str(labels[key][name]) for key in keys]) for name in labels[keys[0]]}
    jobs = []
    for y in tasks.values():
        train, test = split(y)
        jobs += [(x[train], y[train], x[test]) for x in pools.values()] * 2  # the model's and the floor's
    print(f"{len(keys)} images, {len(tasks)} labels, {len(jobs)} probes per round")

    times: dict[str, list[float]] = {"one after another": [], "one per core": []}
    for _ in range(args.rounds):
        start = time.perf_counter()
        sequential = [linear_probe(*job) for job in jobs]
        times["one after another"].append(time.perf_counter() - start)
        start = time.perf_counter()
        parallel = linear_probes(jobs)
        times["one per core"].append(time.perf_counter() - start)
        assert all(np.array_equal(a, b) for a, b in zip(sequential, parallel, strict=True)), "predictions differ"
    for name, seconds in times.items():
        print(f"{name:>18}: " + ", ".join(f"{s:.1f}" for s in seconds) + f" s; median {statistics.median(seconds):.1f}")
    ratios = [a / b for a, b in zip(*times.values(), strict=True)]
    print(f"speed-up per round: {', '.join(f'{r:.2f}x' for r in ratios)}; median {statistics.median(ratios):.2f}x")


if __name__ == "__main__":
    main()
