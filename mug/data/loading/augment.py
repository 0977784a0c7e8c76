"""Augmentation for the loader: decoded pixels in, uint8 [S, S, 3] rows of a batch out.

Crops are resized and flipped by OpenCV (faster than torch's uint8 antialiased bicubic and PIL's: docs/benchmarks.md,
"Measured choices in the code"), and images stay uint8 and channels-last until `normalize` turns a whole batch into
ImageNet-normalised floats.
Decoding JPEGs at reduced DCT scale was measured and dropped: at img2dataset's quality 95 entropy decoding
dominates, and 1/2 scale is no faster than full scale. Randomness comes from the `random.Random` passed in, so a
seeded loader is deterministic.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from typing import NamedTuple

import cv2
import numpy as np
import torch
import torchvision.transforms.v2.functional as TF
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

from mug.config import ConfigError
from mug.data.loading.decode import decode

_MEAN = torch.tensor(IMAGENET_DEFAULT_MEAN).view(1, 3, 1, 1) * 255
_INV_STD = 1 / (torch.tensor(IMAGENET_DEFAULT_STD).view(1, 3, 1, 1) * 255)
AREA_BEYOND = 1.5  # crops shrinking by more than this are averaged over pixel areas: bicubic would alias
cv2.setNumThreads(1)  # the loader's parallelism is its worker processes; OpenCV's own threads would oversubscribe


class Box(NamedTuple):
    left: int
    top: int
    width: int
    height: int


def check_crop_scale(scale: tuple[float, float] | None, name: str) -> None:
    """A crop area range (lo, hi) needs 0 < lo <= hi <= 1; None is the recipe's. Its type is checked with the
    config's other fields (`mug.fields`); `name` is the setting's."""
    if scale is not None and not 0 < scale[0] <= scale[1] <= 1:
        raise ConfigError(f"{name} must be two fractions of the image area, 0 < low <= high <= 1, got {list(scale)}")


def random_resized_box(
    width: int, height: int, scale: tuple[float, float], rng: random.Random, ratio=(3 / 4, 4 / 3)
) -> Box:
    """torchvision's RandomResizedCrop parameters: a box of random area fraction and aspect ratio."""
    area = width * height
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(*log_ratio))
        w, h = round(math.sqrt(target * aspect)), round(math.sqrt(target / aspect))
        if 0 < w <= width and 0 < h <= height:  # `random() * n` rather than randint: a third of the time
            return Box(int(rng.random() * (width - w + 1)), int(rng.random() * (height - h + 1)), w, h)
    w, h = width, height  # fallback: the largest centred box within the ratio range
    if width / height < ratio[0]:
        h = round(width / ratio[0])
    elif width / height > ratio[1]:
        w = round(height * ratio[1])
    return Box((width - w) // 2, (height - h) // 2, w, h)


def center_box(width: int, height: int) -> Box:
    """The centred square: resizing it is 'resize the shorter side, then centre-crop'."""
    side = min(width, height)
    return Box((width - side) // 2, (height - side) // 2, side, side)


def resize_into(pixels: np.ndarray, box: Box, dst: np.ndarray, flip: bool = False) -> None:
    """Crop `box` out of uint8 [H, W, 3] `pixels` and resize it into `dst` ([S, S, 3]: a row of a channels-last
    batch, so nothing is copied afterwards). Bicubic, or pixel-area averaging where the crop shrinks by more than
    1.5x and bicubic would alias (area averaging costs 40% more; crops of img2dataset's 256 px images for 224 px
    never shrink that much)."""
    size = dst.shape[0]
    crop = pixels[box.top : box.top + box.height, box.left : box.left + box.width]
    if crop.shape[:2] != (size, size):
        shrink = max(box.width, box.height) > AREA_BEYOND * size
        cv2.resize(crop, (size, size), dst=dst, interpolation=cv2.INTER_AREA if shrink else cv2.INTER_CUBIC)
        crop = dst
    if flip:
        cv2.flip(crop, 1, dst=dst)
    elif crop is not dst:
        np.copyto(dst, crop)


def resized_crop(image: torch.Tensor, box: Box, size: int, flip: bool = False) -> torch.Tensor:
    """`resize_into` for a uint8 [3, H, W] image: a new [3, size, size] view in channels-last memory order."""
    dst = np.empty((size, size, 3), dtype=np.uint8)
    resize_into(hwc(image), box, dst, flip)
    return torch.from_numpy(dst).permute(2, 0, 1)


def hwc(images: torch.Tensor) -> np.ndarray:
    """uint8 [..., 3, H, W] -> [..., H, W, 3] numpy: a view for channels-last memory (what OpenCV reads and writes),
    else a copy."""
    pixels = images.movedim(-3, -1).numpy()
    return pixels if pixels.strides[-2:] == (3, 1) else np.ascontiguousarray(pixels)


def channels_last(shape: tuple[int, int, int, int], dtype: torch.dtype, device=None) -> torch.Tensor:
    """An empty [N, C, H, W] tensor stored as [N, H, W, C], the order decoded images and the resize kernels use."""
    return torch.empty(shape, dtype=dtype, device=device, memory_format=torch.channels_last)


def normalize(images: torch.Tensor | Sequence[torch.Tensor], out: torch.Tensor | None = None) -> torch.Tensor:
    """uint8 images, [N, 3, H, W] or N of [3, H, W], on any device -> ImageNet-normalised float32 [N, 3, H, W],
    written into `out` when given (shared memory, say), else channels-last like the loader's batches."""
    if out is None:
        out = channels_last((len(images), *images[0].shape), torch.float32, images[0].device)
    if isinstance(images, torch.Tensor):
        out.copy_(images)
    else:  # no uint8 batch stacked first
        for row, image in zip(out, images, strict=True):
            row.copy_(image)
    # A converting copy then two in-place passes: faster than mixed-dtype arithmetic.
    mean, inv_std = _MEAN.to(out.device), _INV_STD.to(out.device)
    n, c, h, w = out.shape
    if out.is_contiguous(memory_format=torch.channels_last) and not out.is_contiguous():
        # Per-channel constants broadcast over a 3-long innermost dim run 7-10x slower on CPU than the same
        # constants repeated along whole [W * 3] pixel rows.
        rows = out.permute(0, 2, 3, 1).view(n * h, w * c)
        rows.sub_(mean.view(c).repeat(w)).mul_(inv_std.view(c).repeat(w))
        return out
    return out.sub_(mean).mul_(inv_std)


def gaussian_blur(image: torch.Tensor, kernel: int, sigma: float) -> torch.Tensor:
    """torchvision's gaussian_blur (same kernel, reflect padding; within 1 grey level) through OpenCV, which is
    faster. uint8 [3, H, W] in, channels-last out."""
    pixels = cv2.GaussianBlur(hwc(image), (kernel, kernel), sigma, sigmaY=sigma, borderType=cv2.BORDER_REFLECT_101)
    return torch.from_numpy(pixels).permute(2, 0, 1)


def adjust_hue(image: torch.Tensor, factor: float) -> torch.Tensor:
    """torchvision's adjust_hue (the hue turned by `factor` x 360 degrees; within 1 grey level) through OpenCV's
    float HSV, which is faster, for ColorJitter's most expensive step. uint8 [3, H, W] in, channels-last out."""
    hsv = cv2.cvtColor(hwc(image).astype(np.float32) * (1 / 255), cv2.COLOR_RGB2HSV)
    hsv[..., 0] = (hsv[..., 0] + factor * 360) % 360
    rgb = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
    return torch.from_numpy(np.rint(rgb * 255).clip(0, 255).astype(np.uint8)).permute(2, 0, 1)


class TrainAugment:
    """MAE's augmentation (also MUG's and CLIP's): RandomResizedCrop(scale=(0.2, 1), bicubic) and a flip.

    `flip` False and a narrower `scale` are for data whose meaning they would change: a caption that says "left
    of" is false of the flipped image, and a small crop cuts out objects a caption counts."""

    views = 1

    def __init__(self, size: int, scale: tuple[float, float] = (0.2, 1.0), flip: bool = True):
        self.size, self.scale, self.flips = size, scale, flip

    def boxes(self, width: int, height: int, rng: random.Random) -> list[Box]:
        return [random_resized_box(width, height, self.scale, rng) for _ in range(self.views)]

    def flip(self, rng: random.Random) -> bool:
        return self.flips and rng.random() < 0.5

    def view(self, pixels: np.ndarray, box: Box, rng: random.Random, out: np.ndarray) -> None:
        resize_into(pixels, box, out, flip=self.flip(rng))

    def __call__(self, data: bytes, rng: random.Random, out: Sequence[np.ndarray]) -> None:
        """Decode `data` and write its `views` uint8 views into `out` ([size, size, 3] arrays: rows of the
        channels-last batch being assembled); raises BadImage."""
        pixels = decode(data)
        for box, row in zip(self.boxes(pixels.shape[1], pixels.shape[0], rng), out, strict=True):
            self.view(pixels, box, rng, row)


class SimCLRAugment(TrainAugment):
    """SimCLR's two views: crop (scale 0.08-1) and flip, colour jitter (p=0.8), grayscale (p=0.2), blur (p=0.5)."""

    views = 2

    def __init__(
        self,
        size: int,
        jitter: tuple[float, float, float, float] = (0.4, 0.4, 0.4, 0.1),
        scale: tuple[float, float] = (0.08, 1.0),
        flip: bool = True,
    ):
        super().__init__(size, scale, flip)
        self.jitter = jitter
        self.blur_kernel = int(0.1 * size) // 2 * 2 + 1  # ~10% of the side, odd

    def view(self, pixels: np.ndarray, box: Box, rng: random.Random, out: np.ndarray) -> None:
        crop = np.empty_like(out)
        resize_into(pixels, box, crop, flip=self.flip(rng))
        view = torch.from_numpy(crop).permute(2, 0, 1)
        if rng.random() < 0.8:
            brightness, contrast, saturation, hue = self.jitter
            ops = [
                (TF.adjust_brightness, rng.uniform(1 - brightness, 1 + brightness)),
                (TF.adjust_contrast, rng.uniform(1 - contrast, 1 + contrast)),
                (TF.adjust_saturation, rng.uniform(1 - saturation, 1 + saturation)),
                (adjust_hue, rng.uniform(-hue, hue)),
            ]
            rng.shuffle(ops)  # ColorJitter applies its four adjustments in random order
            for op, factor in ops:
                view = op(view, factor)
        if rng.random() < 0.2:
            view = TF.rgb_to_grayscale(view, num_output_channels=3)
        if rng.random() < 0.5:
            view = gaussian_blur(view, self.blur_kernel, rng.uniform(0.1, 2.0))
        np.copyto(out, view.permute(1, 2, 0).numpy())


class EvalTransform(TrainAugment):
    """Resize the shorter side to `size` and centre-crop, as `mug.image.to_tensor` does; no randomness."""

    def boxes(self, width: int, height: int, rng: random.Random) -> list[Box]:
        return [center_box(width, height)]

    def flip(self, rng: random.Random) -> bool:
        return False


def fit_into(pixels: np.ndarray, canvas: np.ndarray) -> np.ndarray:
    """`pixels` in the top-left corner of uint8 `canvas` [H, W, 3], shrunk to fit (pixel-area averaging, aspect
    kept) where larger: the view of `canvas` they fill. Pixels decoded into `canvas` already stay where they are."""
    if np.shares_memory(pixels, canvas):
        return pixels
    height, width = pixels.shape[:2]
    scale = min(1.0, canvas.shape[0] / height, canvas.shape[1] / width)
    placed = canvas[: max(1, round(height * scale)), : max(1, round(width * scale))]
    if scale < 1:
        cv2.resize(pixels, placed.shape[1::-1], dst=placed, interpolation=cv2.INTER_AREA)
    else:
        np.copyto(placed, pixels)
    return placed


class DeferredCrop:
    """The worker's half of cropping on the device (`LoaderConfig.crop_on_device`): decode the image whole into
    its canvas row and draw its box and flip by `augment`'s rules, with the same random draws as cropping here;
    `mug.data.loading.device_crop.crop_batch` does the rest on the batch."""

    def __init__(self, augment: TrainAugment):
        self.augment = augment

    def __call__(self, data: bytes, rng: random.Random, out: Sequence[np.ndarray]) -> list[float]:
        """Decode `data` into `out[0]` (a canvas row); returns [left, top, width, height, flip]; raises BadImage."""
        placed = fit_into(decode(data, into=out[0]), out[0])
        box = self.augment.boxes(placed.shape[1], placed.shape[0], rng)[0]
        return [*box, float(self.augment.flip(rng))]
