import torch

from mug.models.encoder import MaskedViTEncoder, random_masking
from mug.models.pixel_decoder import masked_patch_mse, patchify, unpatchify
from tests.conftest import micro_config


def test_every_sample_keeps_the_same_number_of_patches():
    x = torch.randn(5, 16, 8)
    kept, mask, _ = random_masking(x, 0.75)
    assert kept.shape == (5, 4, 8)
    assert torch.equal(mask.sum(dim=1), torch.full((5,), 12.0))


def test_kept_tokens_are_the_unmasked_ones_and_restore_inverts_the_shuffle():
    x = torch.arange(2 * 16, dtype=torch.float).view(2, 16, 1)
    kept, mask, ids_restore = random_masking(x, 0.5)
    for row in range(2):
        visible = x[row, mask[row] == 0, 0]
        assert set(kept[row, :, 0].tolist()) == set(visible.tolist())
    # Putting the kept tokens back with placeholders, then unshuffling, restores the visible positions.
    filler = torch.full((2, 8, 1), -1.0)
    shuffled = torch.cat([kept, filler], dim=1)
    restored = torch.gather(shuffled, 1, ids_restore.unsqueeze(-1))
    assert torch.equal(restored[mask == 0], x[mask == 0])
    assert (restored[mask == 1] == -1).all()


def test_encoder_sees_only_visible_patches():
    cfg = micro_config()
    enc = MaskedViTEncoder(cfg.encoder)
    out = enc(torch.randn(3, 3, 32, 32), mask_ratio=0.75)
    assert out.latent.shape == (3, 1 + 4, 64)  # CLS + 25% of 16 patches
    full = enc(torch.randn(3, 3, 32, 32))
    assert full.latent.shape == (3, 17, 64) and full.mask is None


def test_patchify_round_trip():
    images = torch.randn(2, 3, 32, 32)
    assert torch.equal(unpatchify(patchify(images, 8), 8), images)


def test_reconstruction_loss_counts_masked_patches_only():
    images = torch.randn(2, 3, 32, 32)
    target = patchify(images, 8)
    mask = torch.zeros(2, 16)
    mask[:, :4] = 1
    pred = target.clone()
    pred[mask == 0] += 100.0  # huge error where visible: must not count
    assert masked_patch_mse(pred, images, mask, 8, norm_pix=False).item() == 0.0
    pred[mask == 1] += 1.0
    assert abs(masked_patch_mse(pred, images, mask, 8, norm_pix=False).item() - 1.0) < 1e-6


def test_norm_pix_target_is_per_patch_standardised():
    images = torch.randn(1, 3, 32, 32) * 5 + 3
    target = patchify(images, 8)
    mean, var = target.mean(-1, keepdim=True), target.var(-1, keepdim=True)
    norm_target = (target - mean) / (var + 1e-6).sqrt()
    mask = torch.ones(1, 16)
    assert masked_patch_mse(norm_target, images, mask, 8, norm_pix=True).item() < 1e-10
