"""facebookresearch/mae's `models_mae.py`, loaded from a checkout given on the command line (never vendored) and
built at the size of one of our configs, for the side-by-side rows of `train_step.py --official-mae PATH`.

The official code targets timm 0.3.2 and numpy < 1.24. Two bridges run it on today's versions without editing it:
timm's `Block` no longer takes the `qk_scale` argument MAE always passes as None, and numpy no longer has the
`np.float` alias its sin-cos position table uses (both are the same computation as before)."""

from __future__ import annotations

import importlib
import sys
from functools import partial
from pathlib import Path
from types import ModuleType

import numpy as np
import torch
from torch import nn

from mug.config import ModelConfig

OBJECTIVE = "official-mae"  # the name its rows carry


def load(checkout: str | Path) -> ModuleType:
    """The `models_mae` module of a checkout of github.com/facebookresearch/mae."""
    root = Path(checkout)
    if not (root / "models_mae.py").is_file() or not (root / "util" / "pos_embed.py").is_file():
        raise SystemExit(
            f"--official-mae {checkout}: no models_mae.py and util/pos_embed.py there; give the root of a checkout of "
            "https://github.com/facebookresearch/mae"
        )
    if not hasattr(np, "float"):
        np.float = float  # what the alias meant before numpy 1.24
    sys.path.insert(0, str(root))
    module = importlib.import_module("models_mae")
    timm_block = module.Block
    module.Block = lambda *args, qk_scale=None, **kwargs: timm_block(*args, **kwargs)
    return module


class OfficialMAE(nn.Module):
    """The official model behind our objectives' interface (`model(batch)["loss"]`, `inputs`, `cfg`), so the
    benchmark times, counts and optimises both alike."""

    inputs = ("image",)

    def __init__(self, module: ModuleType, cfg: ModelConfig):
        super().__init__()
        enc, dec = cfg.encoder, cfg.pixel_decoder
        self.cfg, self.mask_ratio = cfg, cfg.objective.mask_ratio
        self.model = module.MaskedAutoencoderViT(
            img_size=enc.img_size,
            patch_size=enc.patch_size,
            in_chans=enc.in_chans,
            embed_dim=enc.width,
            depth=enc.depth,
            num_heads=enc.heads,
            decoder_embed_dim=dec.width,
            decoder_depth=dec.depth,
            decoder_num_heads=dec.heads,
            mlp_ratio=enc.mlp_ratio,
            norm_layer=partial(nn.LayerNorm, eps=1e-6),
            norm_pix_loss=dec.norm_pix_loss,
        )

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        loss, _, _ = self.model(batch["image"], mask_ratio=self.mask_ratio)
        return {"loss": loss}
