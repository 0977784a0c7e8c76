"""Benchmark the data-validation gate: samples/s of the shard scan and of the great-expectations checks.

Writes N synthetic samples in img2dataset's layout (KEY.jpg, KEY.txt, KEY.json per sample; random smooth 64 px
JPEGs with a little noise, web-like captions) to a temp folder, then runs `validate_shards` on them with the
default gate and a tokenizer trained on the captions, and prints the two stages' rates separately.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import tarfile
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from mug.data.gate.report import write_report
from mug.data.gate.validate import validate_shards

WORDS = (
    "a the photo picture of small large red green blue yellow circle square star ring on grey beige background".split()
)


def _jpeg(rng: np.random.Generator, size: int) -> bytes:
    base = Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).resize((size, size), Image.BICUBIC)
    noisy = np.asarray(base, dtype=np.int16) + rng.integers(-12, 13, (size, size, 3), dtype=np.int16)
    buf = io.BytesIO()
    Image.fromarray(noisy.clip(0, 255).astype(np.uint8)).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def _caption(rng: random.Random) -> str:
    return " ".join(rng.choices(WORDS, k=rng.randint(3, 25)))


def write_shard(path: Path, shard: int, count: int, size: int) -> list[str]:
    """One img2dataset-style shard of `count` samples; returns its captions."""
    rng, np_rng = random.Random(shard), np.random.default_rng(shard)
    captions = []
    with tarfile.open(path, "w") as tar:
        for i in range(count):
            key, caption, image = f"{shard:05d}{i:04d}", _caption(rng), _jpeg(np_rng, size)
            meta = {"key": key, "caption": caption, "status": "success", "width": size, "height": size}
            for ext, data in (("jpg", image), ("txt", caption.encode()), ("json", json.dumps(meta).encode())):
                info = tarfile.TarInfo(f"{key}.{ext}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            captions.append(caption)
    return captions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=20_000, help="synthetic samples to write and validate")
    parser.add_argument("--per-shard", type=int, default=1_000, help="samples per shard")
    parser.add_argument("--size", type=int, default=64, help="image side in pixels")
    parser.add_argument("--workers", type=int, default=None, help="scan processes (default: one per core)")
    parser.add_argument("--no-tokenizer", action="store_true", help="skip the token-length check")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="mug-validate-bench-") as tmp:
        root = Path(tmp)
        counts = [min(args.per_shard, args.samples - start) for start in range(0, args.samples, args.per_shard)]
        start = time.perf_counter()
        with ProcessPoolExecutor() as pool:
            paths = [root / f"{shard:05d}.tar" for shard in range(len(counts))]
            captions = [
                c
                for shard in pool.map(write_shard, paths, range(len(counts)), counts, [args.size] * len(counts))
                for c in shard
            ]
        size_mb = sum(p.stat().st_size for p in paths) / 1e6
        print(
            f"wrote {args.samples:,} samples ({args.size} px JPEG, {size_mb:.0f} MB) in {len(paths)} shards "
            f"in {time.perf_counter() - start:.1f} s"
        )
        tokenizer = None
        if not args.no_tokenizer:
            from mug.tokenizer import CaptionTokenizer

            tokenizer = CaptionTokenizer.train(captions[:5_000], vocab_size=200, min_frequency=1)

        start = time.perf_counter()
        import great_expectations  # noqa: F401  a fixed cost per process, kept out of the checks' rate

        print(f"great-expectations import: {time.perf_counter() - start:.1f} s (once per process)")
        start = time.perf_counter()
        result = validate_shards(root, tokenizer=tokenizer, workers=args.workers)
        write_report(result, root / "report")
        total = time.perf_counter() - start
        ran = sum(not check.skipped for check in result.checks)
        print(f"cores: {len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count()}")
        print(
            f"scan:  {result.rows:,} samples in {result.scan_s:.2f} s = {result.samples_per_s:,.0f} samples/s "
            f"({result.workers} workers{', tokens counted' if tokenizer else ''})"
        )
        print(
            f"great-expectations: {ran} checks on {result.rows:,} rows in {result.validate_s:.2f} s = "
            f"{result.rows / result.validate_s:,.0f} samples/s"
        )
        print(
            f"end to end (scan + checks + report): {total:.2f} s = {result.rows / total:,.0f} samples/s; "
            f"gate {'passed' if result.passed else 'failed: ' + '; '.join(result.failures())}"
        )


if __name__ == "__main__":
    main()
