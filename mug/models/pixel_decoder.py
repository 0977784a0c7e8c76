"""MAE's pixel decoder and its norm-pix reconstruction loss on the masked patches."""

from __future__ import annotations

import torch
from timm.models.vision_transformer import Block
from torch import nn

from mug.config import EncoderConfig, PixelDecoderConfig
from mug.models.encoder import LayerNorm6
from mug.models.init import init_transformer_weights
from mug.models.pos_embed import sincos_2d


def patchify(images: torch.Tensor, patch: int) -> torch.Tensor:
    """[N, C, H, W] -> [N, L, patch*patch*C], patches in row-major order (MAE's layout)."""
    n, c, h, w = images.shape
    x = images.reshape(n, c, h // patch, patch, w // patch, patch)
    x = torch.einsum("nchpwq->nhwpqc", x)
    return x.reshape(n, (h // patch) * (w // patch), patch * patch * c)


def unpatchify(patches: torch.Tensor, patch: int, channels: int = 3) -> torch.Tensor:
    """[N, L, patch*patch*C] -> [N, C, H, W]; the inverse of `patchify` for square images."""
    n, length, _ = patches.shape
    grid = int(length**0.5)
    x = patches.reshape(n, grid, grid, patch, patch, channels)
    x = torch.einsum("nhwpqc->nchpwq", x)
    return x.reshape(n, channels, grid * patch, grid * patch)


def normalise_patches(target: torch.Tensor, eps: float = 1e-6) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-patch standardisation; returns (normalised, mean, std) so predictions can be mapped back."""
    mean = target.mean(dim=-1, keepdim=True)
    std = (target.var(dim=-1, keepdim=True) + eps).sqrt()
    return (target - mean) / std, mean, std


def masked_patch_mse(
    pred: torch.Tensor, images: torch.Tensor, mask: torch.Tensor, patch: int, norm_pix: bool = True
) -> torch.Tensor:
    """Mean squared error over the masked patches only (mask = 1 where dropped)."""
    target = patchify(images, patch)
    if norm_pix:
        target = normalise_patches(target)[0]
    per_patch = (pred.float() - target.float()).pow(2).mean(dim=-1)  # [N, L]
    return (per_patch * mask).sum() / mask.sum()


class PixelDecoder(nn.Module):
    def __init__(self, enc: EncoderConfig, cfg: PixelDecoderConfig):
        super().__init__()
        self.patch_size = enc.patch_size
        self.embed = nn.Linear(enc.width, cfg.width)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, cfg.width))
        self.register_buffer("pos_embed", sincos_2d(cfg.width, enc.grid_size, cls_token=True))
        self.blocks = nn.ModuleList(
            Block(cfg.width, cfg.heads, cfg.mlp_ratio, qkv_bias=True, norm_layer=LayerNorm6) for _ in range(cfg.depth)
        )
        self.norm = LayerNorm6(cfg.width)
        self.pred = nn.Linear(cfg.width, enc.patch_size**2 * enc.in_chans)
        self.apply(init_transformer_weights)
        nn.init.normal_(self.mask_token, std=0.02)

    def forward(self, latent: torch.Tensor, ids_restore: torch.Tensor) -> torch.Tensor:
        """Encoder tokens (CLS + visible) -> per-patch pixel predictions [N, L, patch*patch*C]."""
        x = self.embed(latent)  # [N, 1 + keep, W]
        n, length = ids_restore.shape
        masked = self.mask_token.expand(n, length + 1 - x.shape[1], -1)
        patches = torch.cat([x[:, 1:], masked], dim=1)  # [N, L, W], shuffled order
        patches = torch.gather(patches, 1, ids_restore.unsqueeze(-1).expand(-1, -1, x.shape[2]))  # unshuffle
        x = torch.cat([x[:, :1], patches], dim=1) + self.pos_embed  # [N, 1 + L, W]
        for block in self.blocks:
            x = block(x)
        return self.pred(self.norm(x))[:, 1:]  # drop CLS: [N, L, p*p*C]

    def no_weight_decay(self) -> set[str]:
        return {"mask_token", "pos_embed"}
