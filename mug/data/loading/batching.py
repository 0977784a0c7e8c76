"""Samples -> batches in a worker: each image decoded and augmented straight into its row of the batch's
buffer, the captions tokenised, the batch dict assembled. A batch's fields are defined here alone: their buffers
(`buffer_set`), what a sample contributes (`prepare`) and how the batch is put together (`collate`)."""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import get_worker_info

from mug.data.loading.augment import (
    DeferredCrop,
    EvalTransform,
    SimCLRAugment,
    TrainAugment,
    channels_last,
    hwc,
    normalize,
)
from mug.data.loading.buffers import BufferPool
from mug.data.loading.decode import BadImage
from mug.data.loading.handover import handover_tensor
from mug.data.loading.loader_config import LoaderConfig
from mug.data.loading.shard_reading import IMAGE_EXTENSIONS
from mug.data.loading.skips import Skip, Skips
from mug.tokenizer import CaptionTokenizer

log = logging.getLogger("mug.data")


class Batcher:
    """A worker's batch assembly for `cfg` (its inputs, augmentation and delivery: normalised, uint8 or canvases)."""

    def __init__(self, cfg: LoaderConfig, tokenizer: CaptionTokenizer | None):
        self.cfg, self.tokenizer = cfg, tokenizer
        recipe = {"flip": cfg.flip} | ({"scale": tuple(cfg.crop_scale)} if cfg.crop_scale else {})
        if "image2" in cfg.inputs:
            self.augment: TrainAugment | DeferredCrop = SimCLRAugment(cfg.image_size, **recipe)
        else:
            self.augment = TrainAugment(cfg.image_size, **recipe) if cfg.train else EvalTransform(cfg.image_size)
        if cfg.crop_on_device:
            self.augment = DeferredCrop(self.augment)
        self._images = [name for name in ("image", "image2") if name in cfg.inputs]

    def batches(
        self, samples: Iterator[dict[str, Any]], skips: Skips, rng: random.Random, busy: torch.Tensor | None
    ) -> Iterator[dict]:
        """Samples -> batches, each image decoded and augmented straight into its row of the batch: no per-sample
        tensors to stack. Training drops a last partial batch; evaluation keeps it."""
        info = get_worker_info()
        pool = BufferPool(busy[info.id] if busy is not None and info else None, self._buffer_set)
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
                    kept.append(self.prepare(sample, rng, [view[len(kept)] for view in rows]))
                except Skip as skip:
                    skips.count(skip.reason)
                    log.debug("skipped a sample: %s", skip.reason)
                    continue
                if len(kept) == n:
                    break
            if len(kept) == n or (kept and not self.cfg.train):
                batch = self.collate(kept, images, out, skips)
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
        out = {name: handover_tensor((n, h, w, c), dtype).permute(0, 3, 1, 2) for name in self._images}
        if "tokens" in self.cfg.inputs:
            out["tokens"] = handover_tensor((n, self.cfg.context_length), torch.long)
        if self.cfg.crop_on_device:
            out["boxes"] = handover_tensor((n, 5), torch.float32)
        return out

    def prepare(self, sample: dict[str, Any], rng: random.Random, rows: list[np.ndarray]) -> dict[str, Any]:
        """A sample's key, caption and labels; its image views go into `rows`. Raises Skip."""
        data = next((sample[ext] for ext in IMAGE_EXTENSIONS if ext in sample), None)
        if data is None:
            raise Skip("missing_image")
        out: dict[str, Any] = {"key": sample["__key__"]}
        if "tokens" in self.cfg.inputs:
            if "txt" not in sample:
                raise Skip("missing_caption")
            out["caption"] = sample["txt"].decode("utf-8", errors="replace")
        if not self.cfg.train and "json" in sample:  # training never reads the metadata
            try:
                meta = json.loads(sample["json"])
            except ValueError:
                raise Skip("bad_json") from None
            if isinstance(meta, dict) and "labels" in meta:
                out["labels"] = meta["labels"]
        try:
            box = self.augment(data, rng, rows)
        except BadImage:
            raise Skip("bad_image") from None
        if box is not None:
            out["box"] = box
        return out

    def collate(
        self, samples: list[dict], images: dict[str, torch.Tensor], out: dict[str, torch.Tensor], skips: Skips
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
