"""Streaming loader over img2dataset shards (docs/data-format.md): shards -> samples -> batch dicts.

Shards are local paths, folders of `.tar` files, brace patterns, `pipe:` commands or http(s) URLs, and several
sources can be mixed with weights. Training under DDP resamples shards (`resampled`) with a fixed number of batches
per epoch so every rank steps together; otherwise rank r of w reads every w-th shard and worker k of n every n-th of
those, so an evaluation pass sees each sample exactly once.

A shard or sample that cannot be used is skipped and counted, never fatal: the shard reader counts shard failures,
the per-sample step counts the rest. Each worker's counts since its previous batch ride inside the batch
("skipped"), and `Loader` adds them up in `Loader.stats`, so they reach the caller whatever the number of workers.

What it is asked for is `loader_config.LoaderConfig`. One sample's path, module by module: `shard_reading`
(shard order, tar members -> a sample dict, mixtures) -> this module's `_WorkerStream` (a worker's pipeline:
sources -> shuffle -> batches) -> `batching` (decode and augment into the batch's buffer, tokenise, collate;
`handover` allocates the buffers, `buffers` reuses them) -> `Loader` here, in the training process (the batch's
tensors, the epoch's `skips.LoaderStats`).
"""

from __future__ import annotations

import logging
import math
import os
import random
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

import torch
import webdataset as wds
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from mug.config import ConfigError
from mug.data.loading.batching import Batcher
from mug.data.loading.buffers import MappedSets, busy_table, release_when_dropped
from mug.data.loading.loader_config import LoaderConfig
from mug.data.loading.shard_reading import (
    IMAGE_EXTENSIONS,
    MAX_FAILED_SHARDS_IN_A_ROW,
    ShardReader,
    every,
    mix,
    shard_order,
    sources_of,
)
from mug.data.loading.skips import LoaderStats, Skips
from mug.tokenizer import CaptionTokenizer

log = logging.getLogger("mug.data")


def distributed_rank() -> tuple[int, int]:
    """(rank, world_size) from torch.distributed when initialised, else from RANK/WORLD_SIZE, else (0, 1)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


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
        self.cfg, self.sources = cfg, sources
        self.rank, self.world_size, self.resampled = rank, world_size, resampled
        self.batches_per_worker = batches_per_worker
        self.shuffle_buffer = cfg.shuffle_buffer if cfg.shuffle_buffer is not None else (1000 if cfg.train else 0)
        self.batcher = Batcher(cfg, tokenizer)
        self.epoch = 0
        self.busy: torch.Tensor | None = None  # workers' buffer sets in use (mug.data.loading.buffers), set per epoch

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = get_worker_info()
        worker = info.id if info is not None else 0
        seed = f"{self.cfg.seed}/{self.epoch}/{self.rank}/{worker}"
        skips = Skips()
        streams = [self._source(urls, i, worker, skips) for i, (urls, _) in enumerate(self.sources)]
        weights = [weight for _, weight in self.sources]
        pipeline = wds.DataPipeline(
            streams[0] if len(streams) == 1 else partial(mix, streams, weights, random.Random(f"{seed}/mix")),
            wds.shuffle(self.shuffle_buffer, rng=random.Random(f"{seed}/shuffle")) if self.shuffle_buffer else None,
            partial(self.batcher.batches, skips=skips, rng=random.Random(f"{seed}/augment"), busy=self.busy),
        )
        if self.batches_per_worker is not None:
            pipeline = pipeline.with_epoch(self.batches_per_worker)
        yield from pipeline
        if skips.pending or skips.dropped:  # what happened after the last batch still reaches the caller
            yield {"skipped": skips.drain(), "dropped": skips.dropped}

    def _source(self, urls: list[str], index: int, worker: int, skips: Skips) -> wds.DataPipeline:
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
                partial(shard_order, urls, order_rng),
                partial(every, start=self.rank, step=self.world_size),
                wds.split_by_worker,
            ]
        extensions = IMAGE_EXTENSIONS + ("txt",) * ("tokens" in self.cfg.inputs) + ("json",) * (not self.cfg.train)
        reader = ShardReader(skips, extensions, MAX_FAILED_SHARDS_IN_A_ROW if self.resampled else None)
        return wds.DataPipeline(*shards, reader)


def _as_is(batch: dict[str, Any]) -> dict[str, Any]:
    return batch


class Loader:
    """Iterable of batch dicts, one epoch per `iter()`; `stats` holds the current (or last) epoch's figures.

    A batch holds the keys in `cfg.inputs` ("image" and "image2": normalised float [B, 3, S, S], or uint8 without
    `cfg.normalize`, both in channels-last memory order; "tokens": long [B, T]), "key" (list of str) and, in
    evaluation when the samples' .json has them, "labels" (list of dict). With `cfg.crop_on_device`, "image" is
    the uint8 canvases [B, 3, C, C] and "boxes" (float [B, 5]: left, top, width, height in canvas pixels, and
    flip 0/1) says what `mug.data.loading.device_crop.crop_batch` makes of them.
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
    sources = sources_of(cfg.urls)
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
