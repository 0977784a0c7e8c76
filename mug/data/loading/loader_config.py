"""What the loader is asked for: the shards, the batch, the inputs the objective reads and how they are delivered
(`LoaderConfig`), checked before any worker starts."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from mug.config import ConfigError
from mug.data.loading.augment import check_crop_scale
from mug.data.loading.urls import Urls
from mug.fields import check

INPUTS = ("image", "image2", "tokens")


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
    `normalize`: False delivers images as uint8 for `mug.data.loading.augment.normalize` on the GPU: a quarter of the
    bytes to move, and a worker spends about a quarter less time per 224 px sample.
    `crop_on_device`: workers decode each image whole into a uint8 canvas `canvas_size` px square (None: 256,
    img2dataset's default, or `image_size` if larger; larger images are shrunk to fit) and deliver its crop box
    and flip, for `mug.data.loading.device_crop.crop_batch` to crop, resize, flip and normalise on the GPU: a
    worker then spends 20% less time per 224 px sample. Needs `normalize=False`; not for SimCLR's colour augmentations.
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
