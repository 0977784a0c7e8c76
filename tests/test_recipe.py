"""The recipe as the references have it: MAE's position table, open_clip's bound on CLIP's temperature."""

import math

import numpy as np
import pytest
import torch

from mug.config import ConfigError
from mug.models import build_model
from mug.models.pos_embed import sincos_2d
from tests.conftest import micro_config, random_batch


def mae_2d_sincos_pos_embed(embed_dim: int, grid_size: int) -> np.ndarray:
    """facebookresearch/mae util/pos_embed.py `get_2d_sincos_pos_embed` (cls_token=True), transcribed."""

    def one_d(dim: int, pos: np.ndarray) -> np.ndarray:
        omega = 1.0 / 10000 ** (np.arange(dim // 2, dtype=np.float64) / (dim / 2.0))
        out = np.einsum("m,d->md", pos.reshape(-1), omega)
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)

    grid_h = np.arange(grid_size, dtype=np.float32)
    grid_w = np.arange(grid_size, dtype=np.float32)
    grid = np.stack(np.meshgrid(grid_w, grid_h), axis=0).reshape([2, 1, grid_size, grid_size])
    emb = np.concatenate([one_d(embed_dim // 2, grid[0]), one_d(embed_dim // 2, grid[1])], axis=1)
    return np.concatenate([np.zeros([1, embed_dim]), emb], axis=0)


@pytest.mark.parametrize(("dim", "grid_size"), [(16, 4), (192, 8), (768, 14)])
def test_the_position_table_is_maes(dim, grid_size):
    ours = sincos_2d(dim, grid_size, cls_token=True)[0].numpy()
    reference = mae_2d_sincos_pos_embed(dim, grid_size)
    np.testing.assert_allclose(ours, reference, atol=1e-6)
    swapped = reference[1:].reshape(grid_size, grid_size, dim).transpose(1, 0, 2).reshape(-1, dim)
    assert not np.allclose(ours[1:], swapped, atol=1e-3)  # the other axis first is a different table


def test_clip_temperature_is_bounded_on_the_parameter_and_keeps_its_gradient():
    cfg = micro_config("clip", objective={"clip_max_logit_scale": 50.0})
    model = build_model(cfg)
    with torch.no_grad():
        model.logit_scale.fill_(10.0)  # exp(10) >> 50, as an optimiser step could leave it
    out = model(random_batch(cfg))
    assert out["logit_scale"].item() == pytest.approx(math.exp(10.0), rel=1e-5)  # the forward pass does not clamp
    out["loss"].backward()
    assert model.logit_scale.grad.abs().item() > 0  # so the parameter is still pulled, even above the bound
    model.after_optimizer_step()
    assert model.logit_scale.item() == pytest.approx(math.log(50.0))
    assert model(random_batch(cfg))["logit_scale"].item() == pytest.approx(50.0, rel=1e-5)


def test_clip_cannot_start_above_its_bound():
    with pytest.raises(ConfigError, match=r"clip_max_logit_scale \(10.0\) must be at least 1 / clip_init_temperature"):
        micro_config("clip", objective={"clip_max_logit_scale": 10.0, "clip_init_temperature": 0.07})
