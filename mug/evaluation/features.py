"""Frozen-encoder features: the CLS token and the mean of the patch tokens of the full (unmasked) image."""

from __future__ import annotations

import numpy as np
import torch
from tqdm import tqdm

from mug.evaluation.digits import to_model_input
from mug.models.encoder import MaskedViTEncoder, pool

POOLS = ("cls", "mean")


class FeatureBank:
    """Pooled features gathered batch by batch, as float32 numpy arrays per pool."""

    def __init__(self) -> None:
        self.parts: dict[str, list[np.ndarray]] = {kind: [] for kind in POOLS}

    @torch.no_grad()
    def add(self, encoder: MaskedViTEncoder, images: torch.Tensor) -> None:
        latent = encoder(images).latent  # [N, 1 + L, D]
        for kind in POOLS:
            self.parts[kind].append(pool(latent, kind).float().cpu().numpy())

    def arrays(self) -> dict[str, np.ndarray]:
        return {kind: np.concatenate(parts) for kind, parts in self.parts.items()}


def digit_features(
    encoder: MaskedViTEncoder, images: torch.Tensor, batch_size: int, device: torch.device, progress: bool = True
) -> dict[str, np.ndarray]:
    """Features of uint8 digit images [N, 3, 8, 8], upsampled to the encoder's input size batch by batch."""
    bank = FeatureBank()
    for chunk in tqdm(images.split(batch_size), desc="digits", unit="batch", disable=not progress):
        bank.add(encoder, to_model_input(chunk, encoder.cfg.img_size).to(device))
    return bank.arrays()
