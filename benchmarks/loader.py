"""Benchmark the streaming loader against the bare JPEG decode it cannot avoid, on one core.

Writes img2dataset-style shards of photo-like JPEGs (quality 95) into a temp folder, then per case, in interleaved
rounds (this machine's speed drifts by 20% from minute to minute; the best of each figure is kept), measures
samples/s of:
- PIL decode: `Image.open(...).convert("RGB")` of the JPEG bytes already in memory, nothing else: the baseline, in
  a process of its own at its best (`pil_decode.py`; in this process its speed swings by up to 2x);
- bare reader: the same after reading the shards with Python's `tarfile`, in this process (for reference);
- the pipeline: MUG's inputs (tar reading, shuffle, decode, RandomResizedCrop + flip, tokenising, collation into
  a batch) with num_workers=0 (in-process) and 1 (one worker process), delivering uint8 images (what GPU training
  uses: they are normalised on the device), normalised float ones (CPU training, evaluation), or uint8 canvases
  and crop boxes (`crop_on_device`: the crop, resize and flip are left to the GPU). Steady state: the first batch,
  which waits for process start and the shuffle buffer, is not timed.
Overhead = pipeline time per sample / PIL decode time per sample - 1, taken within each round and then the median
over rounds; samples/s are the best round's. Goal: under 15%.
`--breakdown` also times each stage alone, per sample, and the device's half of `crop_on_device` on this CPU
(and on the GPU, if there is one).
"""

from __future__ import annotations

import argparse
import io
import random
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from functools import partial
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from pil_decode import jpegs_of  # benchmarks/ is on sys.path when this file runs as a script

from mug.data.loading.augment import TrainAugment, channels_last, normalize
from mug.data.loading.decode import decode
from mug.data.loading.device_crop import crop_batch
from mug.data.loading.loader import LoaderConfig, make_loader
from mug.data.loading.tar import tar_samples
from mug.tokenizer import CaptionTokenizer

WORDS = "a photo of the red green blue small large dog cat car tree house on in with near grey sky road".split()
CASES = [(64, 64), (256, 224)]  # (JPEG side, crop side): the corpus default, and img2dataset's 256 px for 224
PIPELINES = [(0, "uint8"), (0, "float"), (0, "canvas"), (1, "uint8"), (1, "float"), (1, "canvas")]  # workers, images


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


def fresh_pil_rate(folder: Path) -> float:
    """`pil_decode.py` in a process of its own: the baseline at its fastest and steadiest."""
    script = Path(__file__).with_name("pil_decode.py")
    return float(subprocess.run([sys.executable, script, folder], capture_output=True, text=True, check=True).stdout)


def reader_rate(folder: Path) -> float:
    count, start = 0, time.perf_counter()
    for path in sorted(folder.glob("*.tar")):
        with tarfile.open(path, "r|") as tar:
            for member in tar:
                if member.name.endswith(".jpg"):
                    Image.open(io.BytesIO(tar.extractfile(member).read())).convert("RGB")
                    count += 1
    return count / (time.perf_counter() - start)


def pipeline_rate(folder: Path, crop: int, workers: int, images: str, batch: int, tok: CaptionTokenizer) -> float:
    cfg = LoaderConfig(
        urls=str(folder), batch_size=batch, image_size=crop, inputs=("image", "tokens"), context_length=32,
        num_workers=workers, normalize=images == "float",
        crop_on_device=images == "canvas", canvas_size=side_of(folder),
    )  # fmt: skip
    loader = iter(make_loader(cfg, tok, rank=0, world_size=1))
    next(loader)
    count, start = 0, time.perf_counter()
    for b in loader:
        count += len(b["key"])
    return count / (time.perf_counter() - start)


def overhead(rounds: list[dict[str, float]], name: str) -> float:
    """Time per sample over PIL decode's, minus 1, within each round, then the median: robust to the drift."""
    return statistics.median(r["pil"] / r[name] - 1 for r in rounds)


def per_sample_us(work, items: list) -> float:
    start = time.perf_counter()
    for item in items:
        work(item)
    return (time.perf_counter() - start) / len(items) * 1e6


def breakdown(folder: Path, crop: int, batch: int, tok: CaptionTokenizer) -> dict[str, float]:
    """Microseconds per sample of each stage alone (best of 3)."""
    paths, jpegs = sorted(folder.glob("*.tar")), jpegs_of(folder)
    images, rng = [decode(j) for j in jpegs], random.Random(0)
    captions = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 15))) for _ in jpegs]
    augment, row = TrainAugment(crop), np.empty((crop, crop, 3), dtype=np.uint8)
    batches = [captions[i : i + batch] for i in range(0, len(captions), batch)]
    uint8 = channels_last((batch, 3, crop, crop), torch.uint8)
    out = channels_last((batch, 3, crop, crop), torch.float32)

    def read(path: Path) -> None:
        with open(path, "rb") as stream:
            for _ in tar_samples(stream):
                pass

    def crop_resize_flip(pixels: np.ndarray) -> None:
        augment.view(pixels, augment.boxes(pixels.shape[1], pixels.shape[0], rng)[0], rng, row)

    stages = {
        "tar (mug.data.loading.tar)": lambda: per_sample_us(read, paths) / (len(jpegs) / len(paths)),
        "decode (simplejpeg)": lambda: per_sample_us(decode, jpegs),
        "crop+resize+flip": lambda: per_sample_us(crop_resize_flip, images),
        "tokenise": lambda: per_sample_us(lambda b: tok.encode(b, 32), batches) / batch,
        "normalise (float)": lambda: per_sample_us(lambda _: normalize(uint8, out=out), range(8)) / batch,
    }
    for device in ["cpu"] + ["cuda"] * torch.cuda.is_available():
        stages[f"crop on device ({device})"] = partial(device_crop_us, side_of(folder), crop, batch, device)
    return {name: min(stage() for _ in range(3)) for name, stage in stages.items()}


def device_crop_us(side: int, crop: int, batch: int, device: str) -> float:
    """`crop_batch` per sample: the device's half of `crop_on_device`, canvases already on the device."""
    canvas = channels_last((batch, 3, side, side), torch.uint8, device).random_(0, 256)
    rng = random.Random(0)
    boxes = torch.tensor([[*TrainAugment(crop).boxes(side, side, rng)[0], rng.random() < 0.5] for _ in range(batch)])
    crop_batch(canvas, boxes, crop)  # warm-up
    sync = torch.cuda.synchronize if device == "cuda" else lambda: None
    sync()
    start = time.perf_counter()
    for _ in range(5):
        crop_batch(canvas, boxes, crop)
    sync()
    return (time.perf_counter() - start) / 5 / batch * 1e6


def side_of(folder: Path) -> int:
    """The shards' image side: the folders are named after it."""
    return int(folder.name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (overheads: their median)")
    parser.add_argument("--breakdown", action="store_true", help="also time each stage alone")
    args = parser.parse_args()
    torch.set_num_threads(1)  # one core for decode and for the num_workers=0 pipeline; a worker has one anyway
    with tempfile.TemporaryDirectory() as tmp:
        for side in sorted({side for side, _ in CASES}):
            captions = write_shards(Path(tmp, str(side)), side, args.samples, per_shard=500)
        tok = CaptionTokenizer.train(captions, vocab_size=1000, min_frequency=1)
        for side, crop in CASES:
            folder = Path(tmp, str(side))
            rounds = []
            for _ in range(args.rounds):
                rates = {"pil": fresh_pil_rate(folder), "reader": reader_rate(folder)}
                for workers, images in PIPELINES:
                    rates[f"{workers}/{images}"] = pipeline_rate(folder, crop, workers, images, args.batch, tok)
                rounds.append(rates)
            best = {name: max(r[name] for r in rounds) for name in rounds[0]}

            pil = best["pil"]
            print(f"\n{side} px JPEGs -> {crop} px: PIL decode {pil:,.0f}/s ({1e6 / pil:.0f} us), "
                  f"bare tarfile reader + PIL {best['reader']:,.0f}/s ({overhead(rounds, 'reader'):+.0%})")  # fmt: skip
            print(f"{'workers':>8} {'images':>7} {'samples/s':>10} {'us/sample':>10} {'overhead':>9}")
            for workers, images in PIPELINES:
                name = f"{workers}/{images}"
                rate, extra = best[name], overhead(rounds, name)
                print(f"{workers:>8} {images:>7} {rate:>10,.0f} {1e6 / rate:>10.0f} {extra:>+9.0%}")
            if args.breakdown:
                parts = breakdown(folder, crop, args.batch, tok)
                print("per sample: " + ", ".join(f"{name} {us:.1f} us" for name, us in parts.items()))


if __name__ == "__main__":
    main()
