"""Streaming loader over img2dataset shards (docs/data-format.md): shards -> samples -> batch dicts.

Shards are local paths, folders of `.tar` files, brace patterns, `pipe:` commands or http(s) URLs, and several
sources can be mixed with weights. Training under DDP resamples shards (`resampled`) with a fixed number of batches
per epoch so every rank steps together; otherwise rank r of w reads every w-th shard and worker k of n every n-th of
those, so an evaluation pass sees each sample exactly once.

A shard or sample that cannot be used is skipped and counted, never fatal: the shard reader counts shard failures,
the per-sample step counts the rest. Each worker's counts since its previous batch ride inside the batch
("skipped"), and `Loader` adds them up in `Loader.stats`, so they reach the caller whatever the number of workers.
"""

from __future__ import annotations

import ctypes
import json
import logging
import math
import mmap
import os
import random
import sys
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from itertools import islice
from typing import Any

import numpy as np
import torch
import webdataset as wds
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from mug.config import ConfigError
from mug.data.augment import (
    DeferredCrop,
    EvalTransform,
    SimCLRAugment,
    TrainAugment,
    channels_last,
    check_crop_scale,
    hwc,
    normalize,
)
from mug.data.buffers import BufferPool, MappedSets, busy_table, release_when_dropped, shared_empty
from mug.data.decode import BadImage
from mug.data.tar import tar_samples
from mug.data.urls import ShardError, Urls, expand_shards, reading_shard
from mug.errors import UserError
from mug.fields import check
from mug.tokenizer import CaptionTokenizer

log = logging.getLogger("mug.data")

INPUTS = ("image", "image2", "tokens")
IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp")
# Why a sample or shard was skipped: the keys of `LoaderStats.counts`.
REASONS = (
    "bad_image",  # the image bytes do not decode
    "missing_image",  # no .jpg/.jpeg/.png/.webp in the sample
    "missing_caption",  # no .txt, and the objective reads captions
    "bad_json",  # an evaluation sample's .json does not parse
    "duplicate_file",  # a sample holds the same extension twice
    "unreadable_shard",  # cannot be opened or is not a tar (missing file, failing pipe: command, garbage)
    "truncated_shard",  # cut short or garbled after its first member; the samples before the damage are kept
    "empty_shard",  # a readable tar without a single file
)
# In resampled mode a source whose shards all fail would be retried forever: stop after this many in a row.
MAX_FAILED_SHARDS_IN_A_ROW = 200


@dataclass
class LoaderConfig:
    """What to read and how to batch it.

    `urls`: one source (a path, folder, brace pattern, `pipe:`/http(s) URL, or a list of them) or a mixture,
    a list of `(urls, weight)` pairs. `inputs`: the batch keys the objective reads (`Objective.inputs`); with
    "image2", both images are SimCLR's augmented views, in evaluation too (its loss needs them).
    `shuffle_buffer`: samples held for shuffling; None means 1000 for training, 0 for evaluation.
    `resampled`: draw shards with replacement; None means yes for training under DDP.
    `epoch_samples`: samples per epoch over all ranks; fixes the number of batches per rank (a resampled
    stream is endless without it; a non-resampled one repeats its shards to fill it).
    `normalize`: False delivers images as uint8 for `mug.data.augment.normalize` on the GPU: a quarter of the
    bytes to move, and a worker spends about a quarter less time per 224 px sample.
    `crop_on_device`: workers decode each image whole into a uint8 canvas `canvas_size` px square (None: 256,
    img2dataset's default, or `image_size` if larger; larger images are shrunk to fit) and deliver its crop box
    and flip, for `mug.data.device_crop.crop_batch` to crop, resize, flip and normalise on the GPU: a worker then
    spends 20% less time per 224 px sample. Needs `normalize=False`; not for SimCLR's colour augmentations.
    `crop_scale`: the training crops' area range (None: the recipe's, (0.2, 1), SimCLR's (0.08, 1)); `flip`:
    flip half the training images (off where captions or labels say left and right).
    """

    urls: Urls | Sequence[tuple[Urls, float]]
    batch_size: int
    image_size: int
    inputs: tuple[str, ...] = ("image",)
    context_length: int = 0
    train: bool = True
    shuffle_buffer: int | None = None
    resampled: bool | None = None
    epoch_samples: int | None = None
    num_workers: int = 0
    seed: int = 0
    pin_memory: bool = False
    normalize: bool = True
    crop_on_device: bool = False
    canvas_size: int | None = None
    crop_scale: tuple[float, float] | None = None
    flip: bool = True

    @property
    def canvas_side(self) -> int:
        return self.canvas_size or max(256, self.image_size)

    def validate(self) -> None:
        check(self, "loader.")

        def positive(name: str) -> None:
            value = getattr(self, name)
            if value < 1:
                raise ConfigError(f"loader.{name} must be a positive integer, got {value!r}")

        positive("batch_size")
        positive("image_size")
        for name in ("epoch_samples", "canvas_size"):
            if getattr(self, name) is not None:
                positive(name)
        unknown = set(self.inputs) - set(INPUTS)
        if "image" not in self.inputs or unknown:
            raise ConfigError(f"loader.inputs must include 'image' and only name {INPUTS}, got {self.inputs}")
        if "tokens" in self.inputs and self.context_length < 2:
            raise ConfigError(
                f"loader.context_length must be at least 2 to hold BOS and EOS, got {self.context_length}"
            )
        for name in ("num_workers", "shuffle_buffer"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ConfigError(f"loader.{name} must be a non-negative integer, got {value!r}")
        check_crop_scale(self.crop_scale, "loader.crop_scale")
        if self.crop_on_device and self.normalize:
            raise ConfigError("loader.crop_on_device delivers uint8 canvases for the device to crop and normalise: "
                              "set loader.normalize to False")  # fmt: skip
        if self.crop_on_device and "image2" in self.inputs:
            raise ConfigError("loader.crop_on_device cannot do SimCLR's colour jitter, grayscale and blur: "
                              "crop in the workers for inputs with 'image2'")  # fmt: skip


@dataclass
class LoaderStats:
    """One epoch's figures: batches and samples delivered, and skipped samples/shards by reason."""

    batches: int = 0
    samples: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    dropped: int = 0  # good samples left out in training's last partial batch (one per worker)
    reused_buffers: int = 0  # batches that came in a worker's reused shared memory (mug.data.buffers)

    @property
    def skipped(self) -> int:
        return sum(self.counts.values())

    def add(self, counts: dict[str, int]) -> None:
        for reason, n in counts.items():
            self.counts[reason] = self.counts.get(reason, 0) + n


def _sources(urls: Urls | Sequence[tuple[Urls, float]]) -> list[tuple[list[str], float]]:
    items = [urls] if isinstance(urls, str | os.PathLike) else list(urls)
    if all(isinstance(item, str | os.PathLike) for item in items):
        return [(expand_shards(items), 1.0)]
    # Pairs may come as lists: that is what a YAML or JSON config (a pipeline parameter) holds.
    if not all(isinstance(item, tuple | list) and len(item) == 2 and _positive(item[1]) for item in items):
        raise ConfigError("loader.urls must be shard URLs or a list of (urls, weight) pairs with positive weights")
    return [(expand_shards(source), float(weight)) for source, weight in items]


def _positive(weight: object) -> bool:
    return isinstance(weight, int | float) and not isinstance(weight, bool) and weight > 0


def distributed_rank() -> tuple[int, int]:
    """(rank, world_size) from torch.distributed when initialised, else from RANK/WORLD_SIZE, else (0, 1)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


class _Skip(Exception):
    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class _Skips:
    """A worker's skip counts since its last batch."""

    def __init__(self) -> None:
        self.pending: Counter[str] = Counter()
        self.dropped = 0  # good samples of the last partial batch, which training leaves out

    def count(self, reason: str) -> None:
        self.pending[reason] += 1

    def drain(self) -> dict[str, int]:
        counts, self.pending = dict(self.pending), Counter()
        return counts


class _ShardReader:
    """Shard URLs -> samples through `mug.data.tar`; a shard that fails is counted once, by how far it got."""

    def __init__(self, skips: _Skips, extensions: tuple[str, ...], give_up_after: int | None):
        self.skips, self.give_up_after = skips, give_up_after
        self.suffixes = tuple(f".{ext}" for ext in extensions)
        self.members = 0
        self.failed_in_a_row = 0

    def __call__(self, shards: Iterator[dict]) -> Iterator[dict]:
        for shard in shards:
            url, self.members = shard["url"], 0
            try:
                with reading_shard(url) as stream:
                    for key, files in tar_samples(stream, self._member, self._duplicate):
                        yield {"__key__": key, **files}
                failed = False
            except ShardError as err:
                failed = True
                reason = "truncated_shard" if self.members else "unreadable_shard"
                self.skips.count(reason)
                log.warning("%s %s: %s", reason, url, str(err)[:300])
            if not self.members and not failed:
                self.skips.count("empty_shard")
            self.failed_in_a_row = self.failed_in_a_row + 1 if failed or not self.members else 0
            if self.give_up_after and self.failed_in_a_row >= self.give_up_after:
                raise UserError(
                    f"the last {self.failed_in_a_row} shards drawn were unreadable or empty (the last: {url})"
                )

    def _member(self, name: str) -> bool:
        self.members += 1  # a member's header read: from here on a failure is a truncation
        return name.lower().endswith(self.suffixes)  # members nobody reads are not kept

    def _duplicate(self, name: str) -> None:
        self.skips.count("duplicate_file")


def _shard_order(urls: list[str], rng: random.Random | None) -> Iterator[dict]:
    order = list(urls)
    if rng is not None:
        rng.shuffle(order)
    return iter([{"url": url} for url in order])


def _every(src: Iterator, start: int, step: int) -> Iterator:
    return islice(src, start, None, step)


def _mix(sources: list[wds.DataPipeline], weights: list[float], rng: random.Random) -> Iterator[dict]:
    """Each sample from a source drawn with probability proportional to its weight, until all are exhausted."""
    streams, weights = [iter(s) for s in sources], list(weights)
    while streams:
        i = rng.choices(range(len(streams)), weights)[0]
        try:
            yield next(streams[i])
        except StopIteration:
            del streams[i], weights[i]


def _madvise_op() -> Callable[[int, int, int], int] | None:
    try:
        madvise = ctypes.CDLL(None).madvise
    except (AttributeError, OSError):  # not Linux, or no libc symbols in this process
        return None
    madvise.argtypes, madvise.restype = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int), ctypes.c_int
    return madvise


_madvise = _madvise_op() if sys.platform == "linux" else None
_MADV_HUGEPAGE, _HUGE_PAGE = 14, 2 << 20


def _ask_for_huge_pages(tensor: torch.Tensor) -> None:
    """A fresh batch of tens of MB (64 float images at 224 px: 38 MB) comes from a new mapping that the first write
    faults in 4 KiB at a time: 9,400 faults, 250 us per sample, more than decoding the JPEG. Transparent huge pages
    (in Linux's `madvise` or `always` mode) fault it in 2 MiB at a time. A hint that changes no data, so rounding
    out to whole pages is harmless; where unsupported, nothing changes."""
    nbytes = tensor.numel() * tensor.element_size()
    if _madvise is None or nbytes < _HUGE_PAGE:
        return
    start = tensor.data_ptr() & ~(mmap.PAGESIZE - 1)
    _madvise(start, tensor.data_ptr() + nbytes - start, _MADV_HUGEPAGE)


def _handover_tensor(shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    """An empty tensor for a batch: in a DataLoader worker in shared memory, so handing it over copies nothing
    (as torch's default_collate does); in-process with huge pages asked for."""
    if get_worker_info() is None:
        tensor = torch.empty(shape, dtype=dtype)
        _ask_for_huge_pages(tensor)
        return tensor
    return shared_empty(shape, dtype)


class _WorkerStream(IterableDataset):
    """What each worker runs: its shards -> samples -> shuffle -> decode and augment -> batches with skip counts."""

    def __init__(
        self,
        cfg: LoaderConfig,
        sources: list[tuple[list[str], float]],
        tokenizer: CaptionTokenizer | None,
        rank: int,
        world_size: int,
        resampled: bool,
        batches_per_worker: int | None,
    ):
        super().__init__()
        self.cfg, self.sources, self.tokenizer = cfg, sources, tokenizer
        self.rank, self.world_size, self.resampled = rank, world_size, resampled
        self.batches_per_worker = batches_per_worker
        self.shuffle_buffer = cfg.shuffle_buffer if cfg.shuffle_buffer is not None else (1000 if cfg.train else 0)
        recipe = {"flip": cfg.flip} | ({"scale": tuple(cfg.crop_scale)} if cfg.crop_scale else {})
        if "image2" in cfg.inputs:
            self.augment: TrainAugment | DeferredCrop = SimCLRAugment(cfg.image_size, **recipe)
        else:
            self.augment = TrainAugment(cfg.image_size, **recipe) if cfg.train else EvalTransform(cfg.image_size)
        if cfg.crop_on_device:
            self.augment = DeferredCrop(self.augment)
        self._images = [name for name in ("image", "image2") if name in cfg.inputs]
        self.epoch = 0
        self.busy: torch.Tensor | None = None  # workers' buffer sets in use (mug.data.buffers), set per epoch

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = get_worker_info()
        worker = info.id if info is not None else 0
        seed = f"{self.cfg.seed}/{self.epoch}/{self.rank}/{worker}"
        skips = _Skips()
        streams = [self._source(urls, i, worker, skips) for i, (urls, _) in enumerate(self.sources)]
        weights = [weight for _, weight in self.sources]
        pipeline = wds.DataPipeline(
            streams[0] if len(streams) == 1 else partial(_mix, streams, weights, random.Random(f"{seed}/mix")),
            wds.shuffle(self.shuffle_buffer, rng=random.Random(f"{seed}/shuffle")) if self.shuffle_buffer else None,
            partial(self._batches, skips=skips, rng=random.Random(f"{seed}/augment")),
        )
        if self.batches_per_worker is not None:
            pipeline = pipeline.with_epoch(self.batches_per_worker)
        yield from pipeline
        if skips.pending or skips.dropped:  # what happened after the last batch still reaches the caller
            yield {"skipped": skips.drain(), "dropped": skips.dropped}

    def _source(self, urls: list[str], index: int, worker: int, skips: _Skips) -> wds.DataPipeline:
        if self.resampled:  # every rank and worker draws its own shards: nothing to split
            shards: list[Callable] = [
                wds.ResampledShards(
                    urls,
                    seed=wds.utils.make_seed(self.cfg.seed, self.epoch, index),
                    worker_seed=partial(wds.utils.make_seed, self.rank, worker),
                    deterministic=True,
                )
            ]
        else:  # one shard order on every rank (no rank in its seed), then disjoint slices of it
            order_rng = random.Random(f"{self.cfg.seed}/{self.epoch}/{index}/shards") if self.cfg.train else None
            shards = [
                partial(_shard_order, urls, order_rng),
                partial(_every, start=self.rank, step=self.world_size),
                wds.split_by_worker,
            ]
        extensions = IMAGE_EXTENSIONS + ("txt",) * ("tokens" in self.cfg.inputs) + ("json",) * (not self.cfg.train)
        reader = _ShardReader(skips, extensions, MAX_FAILED_SHARDS_IN_A_ROW if self.resampled else None)
        return wds.DataPipeline(*shards, reader)

    def _batches(self, samples: Iterator[dict[str, Any]], skips: _Skips, rng: random.Random) -> Iterator[dict]:
        """Samples -> batches, each image decoded and augmented straight into its row of the batch: no per-sample
        tensors to stack. Training drops a last partial batch; evaluation keeps it."""
        info = get_worker_info()
        pool = BufferPool(self.busy[info.id] if self.busy is not None and info else None, self._buffer_set)
        n = self.cfg.batch_size
        # Normalised batches are converted from one reused uint8 batch; uint8 ones are written where they go.
        staging = {name: channels_last(self._image_shape(), torch.uint8) for name in self._images}
        staging = staging if self.cfg.normalize else None
        while True:
            index, reused, out = pool.take()
            images = staging or out
            rows = [hwc(images[name]) for name in self._images]  # [N, S, S, 3] views the augmentation writes into
            kept: list[dict[str, Any]] = []
            for sample in samples:
                try:
                    kept.append(self._prepare(sample, rng, [view[len(kept)] for view in rows]))
                except _Skip as skip:
                    skips.count(skip.reason)
                    log.debug("skipped a sample: %s", skip.reason)
                    continue
                if len(kept) == n:
                    break
            if len(kept) == n or (kept and not self.cfg.train):
                batch = self._collate(kept, images, out, skips)
                if index is not None:
                    batch["buffers"] = (info.id, index, reused)
                    if reused and not self.cfg.pin_memory:  # the trainer maps this set already: its index will do
                        for name in out:
                            del batch[name]
                yield batch
            if len(kept) < n:
                skips.dropped = len(kept) if self.cfg.train else 0
                return

    def _image_shape(self) -> tuple[int, int, int, int]:
        side = self.cfg.canvas_side if self.cfg.crop_on_device else self.cfg.image_size
        return (self.cfg.batch_size, 3, side, side)

    def _buffer_set(self) -> dict[str, torch.Tensor]:
        """Tensors for one handed-over batch: the images as delivered, channels-last, and the tokens."""
        n, c, h, w = self._image_shape()
        dtype = torch.float32 if self.cfg.normalize else torch.uint8
        out = {name: _handover_tensor((n, h, w, c), dtype).permute(0, 3, 1, 2) for name in self._images}
        if "tokens" in self.cfg.inputs:
            out["tokens"] = _handover_tensor((n, self.cfg.context_length), torch.long)
        if self.cfg.crop_on_device:
            out["boxes"] = _handover_tensor((n, 5), torch.float32)
        return out

    def _prepare(self, sample: dict[str, Any], rng: random.Random, rows: list[np.ndarray]) -> dict[str, Any]:
        """A sample's key, caption and labels; its image views go into `rows`. Raises _Skip."""
        data = next((sample[ext] for ext in IMAGE_EXTENSIONS if ext in sample), None)
        if data is None:
            raise _Skip("missing_image")
        out: dict[str, Any] = {"key": sample["__key__"]}
        if "tokens" in self.cfg.inputs:
            if "txt" not in sample:
                raise _Skip("missing_caption")
            out["caption"] = sample["txt"].decode("utf-8", errors="replace")
        if not self.cfg.train and "json" in sample:  # training never reads the metadata
            try:
                meta = json.loads(sample["json"])
            except ValueError:
                raise _Skip("bad_json") from None
            if isinstance(meta, dict) and "labels" in meta:
                out["labels"] = meta["labels"]
        try:
            box = self.augment(data, rng, rows)
        except BadImage:
            raise _Skip("bad_image") from None
        if box is not None:
            out["box"] = box
        return out

    def _collate(
        self, samples: list[dict], images: dict[str, torch.Tensor], out: dict[str, torch.Tensor], skips: _Skips
    ) -> dict[str, Any]:
        """The batch dict: `images` (uint8, written by the augmentation) normalised into `out`, or `out` itself."""
        k = len(samples)
        batch: dict[str, Any] = {"key": [s["key"] for s in samples]}
        for name in self._images:
            batch[name] = normalize(images[name][:k], out=out[name][:k]) if self.cfg.normalize else out[name][:k]
        if "tokens" in self.cfg.inputs:
            tokens = self.tokenizer.encode([s["caption"] for s in samples], self.cfg.context_length)
            batch["tokens"] = out["tokens"][:k].copy_(tokens)
        if self.cfg.crop_on_device:
            batch["boxes"] = out["boxes"][:k].copy_(torch.tensor([s["box"] for s in samples]))
        if any("labels" in s for s in samples):
            batch["labels"] = [s.get("labels") for s in samples]
        batch["skipped"] = skips.drain()
        return batch


def _as_is(batch: dict[str, Any]) -> dict[str, Any]:
    return batch


class Loader:
    """Iterable of batch dicts, one epoch per `iter()`; `stats` holds the current (or last) epoch's figures.

    A batch holds the keys in `cfg.inputs` ("image" and "image2": normalised float [B, 3, S, S], or uint8 without
    `cfg.normalize`, both in channels-last memory order; "tokens": long [B, T]), "key" (list of str) and, in
    evaluation when the samples' .json has them, "labels" (list of dict). With `cfg.crop_on_device`, "image" is
    the uint8 canvases [B, 3, C, C] and "boxes" (float [B, 5]: left, top, width, height in canvas pixels, and
    flip 0/1) says what `mug.data.device_crop.crop_batch` makes of them.
    """

    def __init__(self, dataset: _WorkerStream, batches_per_epoch: int | None):
        self.dataset = dataset
        self.cfg = dataset.cfg
        self.batches_per_epoch = batches_per_epoch
        self.epoch = 0
        self.stats = LoaderStats()

    def set_epoch(self, epoch: int) -> None:
        """The next `iter()` runs this epoch (shard order, resampling and augmentation are seeded by it)."""
        self.epoch = epoch

    def __iter__(self) -> Iterator[dict[str, Any]]:
        self.dataset.epoch = self.epoch  # workers start with each iter(), with a copy of the dataset as it is now
        self.dataset.busy = busy = busy_table(self.cfg.num_workers) if self.cfg.num_workers else None
        sets = MappedSets(self.cfg.batch_size)
        self.stats = stats = LoaderStats()
        # Its own generator: DataLoader draws a worker seed per iter(), which must not move the global torch RNG
        # (the trainer's masks and an exactly resumed run depend on that stream).
        loader = DataLoader(
            self.dataset,
            batch_size=None,
            collate_fn=_as_is,  # batches come whole; torch's default would walk every key string of each one
            num_workers=self.cfg.num_workers,
            pin_memory=self.cfg.pin_memory,
            generator=torch.Generator().manual_seed(self.cfg.seed + self.epoch),
        )
        try:
            for batch in loader:
                stats.add(batch.pop("skipped"))
                stats.dropped += batch.pop("dropped", 0)
                if "key" not in batch:
                    continue
                if "buffers" in batch:
                    worker, index, reused = batch.pop("buffers")
                    if not self.cfg.pin_memory:
                        batch.update(sets.tensors(batch, worker, index))
                    tensors = [t for t in batch.values() if isinstance(t, torch.Tensor)]
                    release_when_dropped(tensors, busy, worker, index)
                    stats.reused_buffers += reused
                stats.batches += 1
                stats.samples += len(batch["key"])
                yield batch
                if stats.batches == self.batches_per_epoch:
                    break
        finally:
            level = logging.WARNING if stats.skipped else logging.INFO
            counts = stats.counts or "nothing"
            log.log(
                level, "epoch %d: %d batches, %d samples, skipped %s", self.epoch, stats.batches, stats.samples, counts
            )
            self.epoch += 1


def make_loader(
    cfg: LoaderConfig,
    tokenizer: CaptionTokenizer | None = None,
    rank: int | None = None,
    world_size: int | None = None,
) -> Loader:
    """The loader for this process; rank and world size default to the distributed environment's.

    Raises UserError for a bad config, a missing local shard or a folder without shards, before any worker starts.
    """
    cfg.validate()
    if "tokens" in cfg.inputs and tokenizer is None:
        raise ConfigError("loader.inputs asks for 'tokens': pass the caption tokenizer")
    env_rank, env_world = distributed_rank()
    rank = env_rank if rank is None else rank
    world_size = env_world if world_size is None else world_size
    if not 0 <= rank < world_size:
        raise ConfigError(f"rank {rank} is outside world size {world_size}")
    sources = _sources(cfg.urls)
    resampled = cfg.resampled if cfg.resampled is not None else cfg.train and world_size > 1
    batches_per_epoch = batches_per_worker = None
    if cfg.epoch_samples is not None:
        batches_per_epoch = math.ceil(cfg.epoch_samples / (cfg.batch_size * world_size))
        batches_per_worker = math.ceil(batches_per_epoch / max(1, cfg.num_workers))
    elif cfg.train and world_size > 1 and not resampled:
        log.warning("DDP training without loader.epoch_samples: ranks may get different numbers of batches and hang")
    if not resampled and rank >= min(len(urls) for urls, _ in sources):
        log.warning("rank %d of %d has no shard to read in at least one source", rank, world_size)
    dataset = _WorkerStream(cfg, sources, tokenizer, rank, world_size, resampled, batches_per_worker)
    return Loader(dataset, batches_per_epoch)
