"""scikit-learn's 8x8 handwritten digits (shipped inside the package, no download) as model inputs: images
nobody here generated, so every checkpoint is also measured off the synthetic distribution."""

from __future__ import annotations

import numpy as np
import torch
from sklearn.datasets import load_digits

from mug.data.loading.augment import center_box, normalize, resized_crop


def digit_images(max_samples: int | None = None, seed: int = 0) -> tuple[torch.Tensor, np.ndarray]:
    """(uint8 [N, 3, 8, 8] dark ink on white, as the scans were, digit labels as strings [N]); with
    `max_samples`, a seeded subset that keeps the classes balanced."""
    data = load_digits()
    order = np.random.default_rng(seed).permutation(len(data.target))
    if max_samples is not None and max_samples < len(order):
        # Round-robin over the classes in the shuffled order: a balanced subset.
        rank = np.empty(len(order), dtype=int)
        for digit in range(10):
            members = order[data.target[order] == digit]
            rank[members] = np.arange(len(members))
        order = order[np.argsort(rank[order], kind="stable")][:max_samples]
    ink = torch.from_numpy(data.images[order]).float() / 16  # values 0..16
    grey = ((1 - ink) * 255).round().to(torch.uint8)  # [N, 8, 8]
    return grey[:, None].expand(-1, 3, -1, -1).contiguous(), data.target[order].astype(str)


def to_model_input(images: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 [N, 3, 8, 8] -> normalised float [N, 3, size, size], upsampled as the evaluation transform resizes."""
    box = center_box(images.shape[3], images.shape[2])
    return normalize([resized_crop(image, box, size) for image in images])
