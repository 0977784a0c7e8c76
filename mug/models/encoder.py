"""The masked ViT encoder: timm blocks, fixed sin-cos positions, and MAE's per-sample random masking.

Parameter names equal timm's `VisionTransformer` (cls_token, pos_embed, patch_embed.*, blocks.*, norm.*), so
`encoder.state_dict()` loads into `timm.create_model(..., num_classes=0)` with strict=True (see `to_timm`).
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

import torch
from timm.layers import PatchEmbed
from timm.models.vision_transformer import Block, VisionTransformer
from torch import nn

from mug.config import EncoderConfig
from mug.models.init import init_transformer_weights
from mug.models.pos_embed import sincos_2d

LayerNorm6 = partial(nn.LayerNorm, eps=1e-6)


class EncoderOutput(NamedTuple):
    latent: torch.Tensor  # [N, 1 + kept, D], CLS first
    mask: torch.Tensor | None  # [N, L], 1 = dropped, in the original patch order
    ids_restore: torch.Tensor | None  # [N, L], inverse of the shuffle


def random_masking(
    x: torch.Tensor, mask_ratio: float, noise: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Keep the same number of random patches per sample: argsort of per-sample noise, no padding needed."""
    n, length, dim = x.shape
    keep = int(length * (1 - mask_ratio))
    if noise is None:
        noise = torch.rand(n, length, device=x.device)
    ids_shuffle = torch.argsort(noise, dim=1)  # ascending: the smallest noise is kept
    ids_restore = torch.argsort(ids_shuffle, dim=1)
    ids_keep = ids_shuffle[:, :keep]
    x_kept = torch.gather(x, 1, ids_keep.unsqueeze(-1).expand(-1, -1, dim))  # [N, keep, D]
    mask = torch.ones(n, length, device=x.device)
    mask[:, :keep] = 0
    mask = torch.gather(mask, 1, ids_restore)  # [N, L] back in patch order
    return x_kept, mask, ids_restore


class MaskedViTEncoder(nn.Module):
    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        self.cfg = cfg
        self.patch_embed = PatchEmbed(cfg.img_size, cfg.patch_size, cfg.in_chans, cfg.width)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, cfg.width))
        # A buffer, not a frozen Parameter: fixed, yet saved under timm's key `pos_embed`.
        self.register_buffer("pos_embed", sincos_2d(cfg.width, cfg.grid_size, cls_token=True))
        rates = torch.linspace(0, cfg.drop_path, cfg.depth).tolist()
        self.blocks = nn.ModuleList(
            Block(cfg.width, cfg.heads, cfg.mlp_ratio, qkv_bias=True, drop_path=rate, norm_layer=LayerNorm6)
            for rate in rates
        )
        self.norm = LayerNorm6(cfg.width)
        self.apply(init_transformer_weights)
        weight = self.patch_embed.proj.weight
        nn.init.xavier_uniform_(weight.view(weight.shape[0], -1))  # as a linear layer, like MAE
        nn.init.normal_(self.cls_token, std=0.02)

    def forward(
        self, images: torch.Tensor, mask_ratio: float = 0.0, noise: torch.Tensor | None = None
    ) -> EncoderOutput:
        x = self.patch_embed(images) + self.pos_embed[:, 1:]  # [N, L, D]
        mask = ids_restore = None
        if mask_ratio > 0:
            x, mask, ids_restore = random_masking(x, mask_ratio, noise)  # [N, keep, D]
        cls = (self.cls_token + self.pos_embed[:, :1]).expand(x.shape[0], -1, -1)
        x = torch.cat([cls, x], dim=1)  # [N, 1 + keep, D]
        for block in self.blocks:
            x = block(x)
        return EncoderOutput(self.norm(x), mask, ids_restore)

    def no_weight_decay(self) -> set[str]:
        return {"cls_token", "pos_embed"}


def pool(latent: torch.Tensor, kind: str) -> torch.Tensor:
    """Image feature from encoder tokens: the CLS token, or the mean of the patch tokens."""
    return latent[:, 0] if kind == "cls" else latent[:, 1:].mean(dim=1)


def timm_kwargs(cfg: EncoderConfig) -> dict:
    """Arguments for timm's VisionTransformer with the same layout (for `timm.create_model` too)."""
    return dict(
        img_size=cfg.img_size,
        patch_size=cfg.patch_size,
        in_chans=cfg.in_chans,
        embed_dim=cfg.width,
        depth=cfg.depth,
        num_heads=cfg.heads,
        mlp_ratio=cfg.mlp_ratio,
        qkv_bias=True,
        num_classes=0,
    )


def to_timm(encoder: MaskedViTEncoder) -> VisionTransformer:
    """A plain timm ViT holding this encoder's weights: what downstream users fine-tune."""
    model = VisionTransformer(**timm_kwargs(encoder.cfg))
    model.load_state_dict(encoder.state_dict(), strict=True)
    return model
