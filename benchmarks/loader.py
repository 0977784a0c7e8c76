"""Benchmark the streaming loader against the bare JPEG decode it cannot avoid.

Writes img2dataset-style shards of random-ish JPEGs into a temp folder, then per case prints samples/s of:
- decode: reading the shards with `tarfile` and `Image.open(...).convert("RGB")` on one core, nothing else;
- the full pipeline (MUG inputs: tar reading, shuffle, decode, RandomResizedCrop + flip, normalisation,
  tokenisation, collation) with num_workers=0 (one thread) and 1 (one worker process), delivering float images
  (normalised) or uint8 ones (`normalize=False`, normalised later on the GPU); steady state: the first batch,
  which waits for process start and the shuffle buffer, is not timed;
and the pipeline's overhead over decode: time per sample / decode time per sample - 1. Goal: under 15%.
"""

from __future__ import annotations

import argparse
import io
import random
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from mug.data.loader import LoaderConfig, make_loader
from mug.tokenizer import CaptionTokenizer

WORDS = "a photo of the red green blue small large dog cat car tree house on in with near grey sky road".split()
CASES = [(64, 64), (256, 224), (256, 64)]  # (JPEG side, crop side)


def random_jpeg(rng: np.random.Generator, side: int) -> bytes:
    """Smooth random colour blobs plus grain: about as hard to decode as a photo, unlike pure noise."""
    blobs = Image.fromarray(rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)).resize((side, side), Image.BICUBIC)
    pixels = np.asarray(blobs, dtype=np.int16) + rng.integers(-10, 11, (side, side, 3))
    buf = io.BytesIO()
    Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(buf, "JPEG", quality=95)
    return buf.getvalue()


def write_shards(folder: Path, side: int, samples: int, per_shard: int, seed: int = 0) -> list[str]:
    """img2dataset layout: KEY.jpg, KEY.txt, KEY.json per sample, fixed mtime; returns the captions."""
    folder.mkdir(parents=True)
    rng, words = np.random.default_rng(seed), random.Random(seed)
    captions = []
    for shard in range(0, samples, per_shard):
        with tarfile.open(folder / f"{shard // per_shard:05d}.tar", "w") as tar:
            for index in range(shard, min(samples, shard + per_shard)):
                key = f"{shard // per_shard:05d}{index % per_shard:04d}"
                caption = " ".join(words.choice(WORDS) for _ in range(words.randint(5, 15)))
                captions.append(caption)
                meta = f'{{"key": "{key}", "caption": "{caption}", "status": "success"}}'.encode()
                for ext, data in (("jpg", random_jpeg(rng, side)), ("txt", caption.encode()), ("json", meta)):
                    info = tarfile.TarInfo(f"{key}.{ext}")
                    info.size, info.mtime = len(data), 0
                    tar.addfile(info, io.BytesIO(data))
    return captions


def decode_rate(folder: Path) -> float:
    """Samples/s of reading the shards and decoding every JPEG with PIL, on one core."""
    count, start = 0, time.perf_counter()
    for path in sorted(folder.glob("*.tar")):
        with tarfile.open(path, "r|") as tar:
            for member in tar:
                if member.name.endswith(".jpg"):
                    Image.open(io.BytesIO(tar.extractfile(member).read())).convert("RGB")
                    count += 1
    return count / (time.perf_counter() - start)


def pipeline_rate(
    folder: Path, crop: int, workers: int, normalize: bool, batch: int, tokenizer: CaptionTokenizer
) -> float:
    cfg = LoaderConfig(
        urls=str(folder), batch_size=batch, image_size=crop, inputs=("image", "tokens"), context_length=32,
        num_workers=workers, normalize=normalize,
    )  # fmt: skip
    loader = iter(make_loader(cfg, tokenizer, rank=0, world_size=1))
    next(loader)
    count, start = 0, time.perf_counter()
    for b in loader:
        count += len(b["key"])
    return count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3, help="best of this many runs per figure")
    args = parser.parse_args()
    torch.set_num_threads(1)  # one core for decode and for the num_workers=0 pipeline; a worker has one anyway
    print(f"{'JPEG':>5} {'crop':>5} {'workers':>8} {'images':>7} {'samples/s':>10} {'decode/s':>9} {'overhead':>9}")
    with tempfile.TemporaryDirectory() as tmp:
        for side in sorted({side for side, _ in CASES}):
            captions = write_shards(Path(tmp, str(side)), side, args.samples, per_shard=500)
        tokenizer = CaptionTokenizer.train(captions, vocab_size=1000, min_frequency=1)
        for side, crop in CASES:
            folder = Path(tmp, str(side))
            decode = max(decode_rate(folder) for _ in range(args.repeats))
            for workers, normalize in ((0, True), (1, True), (1, False)):
                rate = max(
                    pipeline_rate(folder, crop, workers, normalize, args.batch, tokenizer) for _ in range(args.repeats)
                )
                images, overhead = "float" if normalize else "uint8", decode / rate - 1
                print(f"{side:>5} {crop:>5} {workers:>8} {images:>7} {rate:>10.0f} {decode:>9.0f} {overhead:>+9.0%}")


if __name__ == "__main__":
    main()
