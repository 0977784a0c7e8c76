"""The synthetic web corpus: rendered scenes with web-style captions and alt-text noise, written as
img2dataset shards under `out/train/` (noisy) and `out/eval/` (clean captions, no noise).

Each sample is a function of (seed, split, index) alone, so any shard can be written on its own, by any
worker, and the same seed always writes byte-identical shards.
"""

from __future__ import annotations

import io
import multiprocessing
import random
import re
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, fields
from pathlib import Path

from tqdm import tqdm

from mug.data.synthetic.shards import MAX_SAMPLES_PER_SHARD, MAX_SHARDS, ShardSample, write_shard
from mug.data.synthetic.synth import COLOURS, SHAPES, Scene, clean_caption, random_scene, render, web_caption
from mug.errors import UserError, writing

SPLITS = ("train", "eval")
UNRELATED_KINDS = ("filename", "boilerplate", "seo", "other_caption")  # captions that do not describe the image
NOISE_KINDS = (*UNRELATED_KINDS, "truncated", "empty", "duplicate", "corrupt")

_FILENAMES = ("IMG_{:04d}.JPG", "DSC{:05d}.jpg", "image{}.png", "photo_{}.jpeg", "Screenshot_{:04d}.png", "{:04d}.jpg")
_BOILERPLATE = (
    "click to enlarge",
    "image may contain: text",
    "image may contain: indoor",
    "stock photo",
    "no description available",
    "thumbnail",
    "untitled",
    "view full size",
    "placeholder image",
    "download high resolution image",
    "royalty free stock illustration",
    "see more",
)
_SEO_WORDS = (
    "shape", "geometric", "abstract", "art", "print", "poster", "wallpaper", "vector", "icon", "design", "modern",
    "minimal", "pattern", "decor", "wall art", "hd", "free download", "graphic", "symbol", "clipart", "png",
)  # fmt: skip


@dataclass(frozen=True)
class NoiseConfig:
    """Fractions of train samples with each kind of web noise; a sample has at most one, so they sum to <= 1.
    The defaults are rough figures for raw web alt-text."""

    unrelated: float = 0.20  # a file name, boilerplate, SEO keywords or another image's caption
    truncated: float = 0.03  # the caption cut off mid-word
    empty: float = 0.01
    duplicate: float = 0.01  # the same JPEG bytes as an earlier sample, with its caption or a new one
    corrupt: float = 0.0  # truncated or garbled JPEG bytes: only for testing loaders and validators

    def __post_init__(self):
        rates = {f.name: getattr(self, f.name) for f in fields(self)}
        for name, rate in rates.items():
            if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 <= rate <= 1:
                raise UserError(f"noise rate '{name}' must be a number in [0, 1], got {rate!r}")
        if sum(rates.values()) > 1 + 1e-9:
            raise UserError(f"noise rates sum to {sum(rates.values()):g}, but a sample has at most one kind (<= 1)")


_RATES = tuple(f.name for f in fields(NoiseConfig))


@dataclass
class CorpusSummary:
    out_dir: str
    samples: dict[str, int]  # per split
    shards: dict[str, int]
    noise: dict[str, int]  # train samples per kind of noise, NOISE_KINDS order
    seconds: float
    samples_per_s: float


@dataclass(frozen=True)
class _Image:
    scene: Scene
    corruption: tuple[str, float, int] | None = None  # (how, fraction of the bytes, seed of the garbage)


@dataclass(frozen=True)
class _Sample:
    image: _Image
    caption: str
    noise: str | None


def _noise_kind(rng: random.Random, noise: NoiseConfig) -> str | None:
    u = rng.random()
    for kind in _RATES:
        rate = getattr(noise, kind)
        if u < rate:
            return rng.choice(UNRELATED_KINDS) if kind == "unrelated" else kind
        u -= rate
    return None


def _unrelated_caption(kind: str, rng: random.Random) -> str:
    if kind == "filename":
        return rng.choice(_FILENAMES).format(rng.randrange(10_000))
    if kind == "boilerplate":
        return rng.choice(_BOILERPLATE)
    if kind == "seo":
        words = [rng.choice(list(COLOURS)), rng.choice(SHAPES), *rng.sample(_SEO_WORDS, rng.randint(4, 8))]
        return " ".join(words)
    return web_caption(random_scene(rng), rng)  # a caption of some other image


def _truncate(caption: str, rng: random.Random) -> str:
    inside_words = [i for i in range(1, len(caption)) if caption[i - 1].isalnum() and caption[i].isalnum()]
    return caption[: rng.choice(inside_words)]


def _sample(seed: int, split: str, index: int, noise: NoiseConfig) -> _Sample:
    """What sample `index` of `split` shows and says, before rendering; draws depend on (seed, split, index) only."""
    rng = random.Random(f"{seed}/{split}/{index}")
    scene = random_scene(rng)
    if split == "eval":
        return _Sample(_Image(scene), clean_caption(scene), None)
    kind = _noise_kind(rng, noise)
    if kind in UNRELATED_KINDS:
        return _Sample(_Image(scene), _unrelated_caption(kind, rng), kind)
    if kind == "truncated":
        return _Sample(_Image(scene), _truncate(web_caption(scene, rng), rng), kind)
    if kind == "empty":
        return _Sample(_Image(scene), "", kind)
    if kind == "duplicate" and index > 0:
        source = _sample(seed, split, rng.randrange(index), noise)
        caption = source.caption if rng.random() < 0.5 else web_caption(source.image.scene, rng)
        return _Sample(source.image, caption, kind)
    if kind == "corrupt":
        corruption = (rng.choice(("truncated", "garbled")), rng.uniform(0.2, 0.8), rng.getrandbits(32))
        return _Sample(_Image(scene, corruption), web_caption(scene, rng), kind)
    return _Sample(_Image(scene), web_caption(scene, rng), None)


def _jpeg(image: _Image, size: int, quality: int) -> bytes:
    buffer = io.BytesIO()
    render(image.scene, size).save(buffer, "JPEG", quality=quality)
    data = buffer.getvalue()
    if image.corruption is None:
        return data
    how, fraction, garbage_seed = image.corruption
    cut = int(len(data) * fraction)
    # Garbage over the start (the JPEG markers) or a missing end: both fail to decode, as broken downloads do.
    return data[:cut] if how == "truncated" else random.Random(garbage_seed).randbytes(cut) + data[cut:]


@dataclass(frozen=True)
class _ShardJob:
    directory: Path
    split: str
    shard: int
    indices: range
    seed: int
    image_size: int
    noise: NoiseConfig
    jpeg_quality: int


def _write(job: _ShardJob, on_sample: Callable[[], object] = lambda: None) -> Counter:
    """Write one shard; returns how many of its samples have each kind of noise."""
    counts: Counter = Counter()

    def samples() -> Iterator[ShardSample]:
        for index in job.indices:
            sample = _sample(job.seed, job.split, index, job.noise)
            counts[sample.noise] += 1
            jpeg = _jpeg(sample.image, job.image_size, job.jpeg_quality)
            url = f"synth://{job.split}/{index}"
            yield ShardSample(jpeg, sample.caption, url, job.image_size, job.image_size, sample.image.scene.labels)
            on_sample()

    write_shard(job.directory, job.shard, samples())
    return counts


def _check_count(name: str, value: object, minimum: int, maximum: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum or (maximum and value > maximum):
        bounds = f"in [{minimum}, {maximum}]" if maximum else f">= {minimum}"
        raise UserError(f"{name} must be an integer {bounds}, got {value!r}")


def _refuse_stale_shards(directory: Path, shards: int) -> None:
    """Shards left by an earlier, larger corpus would silently join this one."""
    if directory.exists() and not directory.is_dir():
        raise UserError(f"{directory} exists and is not a folder")
    for path in sorted(directory.glob("*")):
        match = re.fullmatch(r"(\d{5})(\.tar|\.parquet|_stats\.json)", path.name)
        if match and int(match[1]) >= shards:
            raise UserError(
                f"{directory} already holds {path.name}, which this corpus ({shards} shards) would not replace; "
                "write to an empty folder"
            )


def synthesize_corpus(
    out_dir: str | Path,
    train_samples: int,
    eval_samples: int,
    shard_size: int = 1000,
    image_size: int = 64,
    seed: int = 0,
    noise: NoiseConfig = NoiseConfig(),  # frozen, so one shared default is safe
    jpeg_quality: int = 90,
    progress: bool = True,
    workers: int = 1,
) -> CorpusSummary:
    """Write the corpus under `out_dir`/train and `out_dir`/eval, `noise` applying to train only.
    `workers` > 1 writes shards in that many processes; the shards are the same either way."""
    _check_count("train_samples", train_samples, 0)
    _check_count("eval_samples", eval_samples, 0)
    _check_count("shard_size", shard_size, 1, MAX_SAMPLES_PER_SHARD)
    _check_count("image_size", image_size, 8, 1024)
    _check_count("jpeg_quality", jpeg_quality, 1, 100)
    _check_count("workers", workers, 1)
    if not isinstance(noise, NoiseConfig):
        raise UserError(f"noise must be a NoiseConfig, got {type(noise).__name__}")
    sizes = {"train": train_samples, "eval": eval_samples}
    shards = {split: -(-n // shard_size) for split, n in sizes.items()}
    for split in SPLITS:
        if shards[split] > MAX_SHARDS:
            raise UserError(f"{split} would need {shards[split]} shards, more than {MAX_SHARDS}; raise shard_size")
        _refuse_stale_shards(Path(out_dir) / split, shards[split])
    with writing("the corpus"):
        for split in SPLITS:
            (Path(out_dir) / split).mkdir(parents=True, exist_ok=True)

    jobs = [
        _ShardJob(
            Path(out_dir) / split,
            split,
            shard,
            range(shard * shard_size, min((shard + 1) * shard_size, sizes[split])),
            seed,
            image_size,
            noise,
            jpeg_quality,
        )
        for split in SPLITS
        for shard in range(shards[split])
    ]
    counts: Counter = Counter()
    start = time.perf_counter()
    with (
        writing(f"the corpus's shards in {out_dir}"),
        tqdm(total=sum(sizes.values()), unit="sample", desc="synthesize", disable=not progress) as bar,
    ):
        if workers == 1:
            for job in jobs:
                counts += _write(job, lambda: bar.update(1))
        else:
            with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
                futures = {pool.submit(_write, job): job for job in jobs}
                for future in as_completed(futures):
                    counts += future.result()
                    bar.update(len(futures[future].indices))
    seconds = time.perf_counter() - start
    return CorpusSummary(
        out_dir=str(out_dir),
        samples=sizes,
        shards=shards,
        noise={kind: counts[kind] for kind in NOISE_KINDS},
        seconds=seconds,
        samples_per_s=sum(sizes.values()) / seconds if seconds > 0 else 0.0,
    )
