"""Cropping on the device (`crop_on_device`): the workers' boxes, flips and pixels, with the crop done later."""

import dataclasses
import random

import cv2
import numpy as np
import pytest
import torch

from mug.config import ConfigError
from mug.data.loading.augment import (
    _INV_STD,
    _MEAN,
    Box,
    DeferredCrop,
    TrainAugment,
    channels_last,
    fit_into,
    hwc,
    random_resized_box,
    resize_into,
)
from mug.data.loading.decode import decode
from mug.data.loading.device_crop import crop_batch
from mug.data.loading.loader import LoaderConfig, make_loader
from tests.test_loader import encoded, photo, write_good


def grey_levels(normalised: torch.Tensor) -> torch.Tensor:
    """`crop_batch`'s output back in 0-255 units, as [B, H, W, 3]."""
    return (normalised / _INV_STD + _MEAN).permute(0, 2, 3, 1)


@pytest.mark.parametrize(
    ("side", "size"),
    [(96, 64), (96, 72), (300, 96), (64, 64)],
    ids=["enlarge", "shrink-bicubic", "shrink-area", "same-size"],
)
def test_crop_batch_matches_the_workers_crop_within_a_grey_level(side, size):
    """Noise images (the hardest case for resampling) of two shapes in a canvas filled with white around them:
    every box, flip and resize regime gives the CPU path's pixels within one grey level, and no white leaks in."""
    rng, draws = np.random.default_rng(0), random.Random(0)
    canvas = channels_last((12, 3, side, side), torch.uint8)
    rows = hwc(canvas)
    rows[:] = 255
    boxes, expected = [], []
    for i, row in enumerate(rows):
        height, width = (side, side) if i % 2 else (side * 3 // 4, side - 5)
        row[:height, :width] = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        box = random_resized_box(width, height, (0.05, 1.0), draws) if i > 1 else Box(0, 0, width, height)
        if side == size and i == 1:
            box = Box(0, 0, size, size)  # exactly the output size: a plain copy
        flip = i % 3 == 0
        reference = np.empty((size, size, 3), dtype=np.uint8)
        resize_into(row[:height, :width], box, reference, flip)
        boxes.append([*box, float(flip)])
        expected.append(reference)
    out = crop_batch(canvas, torch.tensor(boxes), size)
    assert out.shape == (12, 3, size, size) and out.dtype == torch.float32
    assert out.is_contiguous(memory_format=torch.channels_last)
    diff = (grey_levels(out) - torch.from_numpy(np.stack(expected)).float()).abs()
    assert diff.max() < 1.001 and (diff > 0.5).float().mean() < 0.005  # OpenCV's 11-bit weights round off


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> str:
    root = tmp_path_factory.mktemp("canvas")
    write_good(root, range(3), 8)
    return str(root)


@pytest.mark.parametrize(("workers", "size"), [(0, 48), (0, 16), (2, 32)])
def test_the_loader_leaves_the_crop_it_would_have_made_to_the_device(shards, workers, size):
    """Same seed, same keys, and the device's crop of each canvas gives the batch the workers would have made.
    The 32 px images sit in 40 px canvases of unwritten or stale memory, which must not reach a crop."""
    on_cpu = LoaderConfig(shards, batch_size=4, image_size=size, num_workers=workers, normalize=False, seed=3)
    in_workers = list(make_loader(on_cpu, None, 0, 1))
    on_device = list(make_loader(dataclasses.replace(on_cpu, crop_on_device=True, canvas_size=40), None, 0, 1))
    assert [b["key"] for b in on_device] == [b["key"] for b in in_workers] and len(in_workers) == 6
    for made, left in zip(in_workers, on_device, strict=True):
        assert left["image"].shape == (4, 3, 40, 40) and left["image"].dtype == torch.uint8
        assert left["boxes"].shape == (4, 5) and bool((left["boxes"][:, :2] + left["boxes"][:, 2:4] <= 32).all())
        cropped = grey_levels(crop_batch(left["image"], left["boxes"], size))
        assert (cropped - made["image"].permute(0, 2, 3, 1).float()).abs().max() < 1.001


def test_images_are_decoded_into_their_canvas_and_shrunk_to_fit_when_larger():
    canvas = np.zeros((64, 64, 3), dtype=np.uint8)
    as_wide = encoded(photo(64, 48), "JPEG", quality=95)
    pixels = decode(as_wide, into=canvas)  # as wide as the canvas: decoded in place
    assert np.shares_memory(pixels, canvas) and np.array_equal(pixels, decode(as_wide)) and pixels.shape == (48, 64, 3)
    assert fit_into(pixels, canvas) is pixels

    narrow = encoded(photo(50, 60), "JPEG", quality=95)
    pixels = decode(narrow, into=canvas)  # any other width decodes apart and is copied in
    assert not np.shares_memory(pixels, canvas)
    placed = fit_into(pixels, canvas)
    assert placed.shape == (60, 50, 3) and np.shares_memory(placed, canvas) and np.array_equal(placed, pixels)

    large = decode(encoded(photo(300, 200), "PNG"))
    placed = fit_into(large, canvas)  # aspect kept, area-averaged
    assert placed.shape == (43, 64, 3)
    reference = cv2.resize(large, (64, 43), interpolation=cv2.INTER_AREA)
    assert np.array_equal(placed, reference)

    draws, crop = random.Random(0), DeferredCrop(TrainAugment(32))
    for _ in range(50):  # the boxes are drawn within the image as placed
        left, top, width, height, flip = crop(encoded(photo(300, 200), "JPEG"), draws, [canvas])
        assert 0 <= left and left + width <= 64 and 0 <= top and top + height <= 43 and flip in (0.0, 1.0)


def test_crop_on_device_refuses_what_it_cannot_do():
    with pytest.raises(ConfigError, match="set loader.normalize to False"):
        LoaderConfig("x.tar", batch_size=2, image_size=32, crop_on_device=True).validate()
    with pytest.raises(ConfigError, match="SimCLR.*'image2'"):
        LoaderConfig(
            "x.tar", batch_size=2, image_size=32, inputs=("image", "image2"), normalize=False, crop_on_device=True
        ).validate()
    with pytest.raises(ConfigError, match="loader.canvas_size must be a positive integer, got 0"):
        LoaderConfig("x.tar", batch_size=2, image_size=32, canvas_size=0).validate()
