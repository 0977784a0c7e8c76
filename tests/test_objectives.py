import pytest
import timm
import torch

from mug.config import build_config
from mug.models import build_model, to_timm
from mug.models.encoder import MaskedViTEncoder, timm_kwargs
from mug.models.text import TextTransformer
from tests.conftest import micro_config, random_batch

OBJECTIVES = ["mae", "mug", "simclr", "clip"]
EXPECTED_LOSSES = {
    "mae": {"loss", "loss_rec"},
    "mug": {"loss", "loss_rec", "loss_cap"},
    "simclr": {"loss", "loss_contrastive"},
    "clip": {"loss", "loss_contrastive"},
}


@pytest.mark.parametrize("objective", OBJECTIVES)
def test_every_parameter_is_initialised_and_gets_a_gradient(objective):
    torch.manual_seed(0)
    cfg = micro_config(objective)
    model = build_model(cfg)
    for name, param in model.named_parameters():
        assert param.numel() > 0 and torch.isfinite(param).all(), name
        if param.ndim > 1:  # matrices must not be left at zero (a forgotten init)
            assert param.abs().sum() > 0, name
    losses = model(random_batch(cfg))
    assert set(losses) - {"logit_scale"} == EXPECTED_LOSSES[objective]
    assert torch.isfinite(losses["loss"])
    losses["loss"].backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert missing == []


def test_mug_total_is_the_weighted_sum():
    cfg = micro_config("mug", objective={"w_rec": 0.3, "w_cap": 2.0})
    model = build_model(cfg)
    torch.manual_seed(1)
    out = model(random_batch(cfg))
    assert torch.allclose(out["loss"], 0.3 * out["loss_rec"] + 2.0 * out["loss_cap"])


def test_mae_has_no_text_decoder_and_mug_shares_one_encoder_pass():
    mae, mug = build_model(micro_config("mae")), build_model(micro_config("mug"))
    assert mae.caption_decoder is None and mae.inputs == ("image",)
    assert mug.caption_decoder is not None and mug.inputs == ("image", "tokens")


def _decoder_and_memory():
    torch.manual_seed(0)
    cfg = micro_config("mug")
    decoder = TextTransformer(cfg.text, image_width=cfg.encoder.width).eval()
    memory = decoder.project_memory(torch.randn(2, 5, cfg.encoder.width))
    return cfg, decoder, memory


def test_caption_decoder_is_causal():
    cfg, decoder, memory = _decoder_and_memory()
    tokens = torch.randint(4, cfg.text.vocab_size, (2, 10))
    changed = tokens.clone()
    changed[:, 6:] = (changed[:, 6:] + 7) % cfg.text.vocab_size
    a, b = decoder(tokens, memory), decoder(changed, memory)
    assert torch.allclose(a[:, :6], b[:, :6], atol=1e-6)
    assert not torch.allclose(a[:, 6:], b[:, 6:])


def test_caption_decoder_attends_to_the_image():
    cfg, decoder, memory = _decoder_and_memory()
    tokens = torch.randint(4, cfg.text.vocab_size, (2, 6))
    assert not torch.allclose(decoder(tokens, memory), decoder(tokens, memory.flip(0)))


def test_caption_loss_ignores_padding_and_averages_over_real_tokens():
    cfg = micro_config("mug")
    model = build_model(cfg)
    batch = random_batch(cfg, n=2)  # its last 3 positions are padding
    noise = torch.rand(2, cfg.encoder.num_patches)
    base = model(batch, noise=noise)["loss_cap"]
    extra_pad = torch.full((2, 1), cfg.text.pad_id)
    for tokens in (batch["tokens"][:, :-1], torch.cat([batch["tokens"][:, :-1], extra_pad], 1)):
        assert torch.allclose(model(dict(batch, tokens=tokens), noise=noise)["loss_cap"], base, atol=1e-6)
    real = dict(batch, tokens=batch["tokens"].clone())
    real["tokens"][:, -1] = 5  # a real token where padding was: now it counts
    assert not torch.allclose(model(real, noise=noise)["loss_cap"], base)


@pytest.mark.parametrize("objective", OBJECTIVES)
def test_encoder_loads_into_timm_vit_strictly_with_equal_features(objective):
    torch.manual_seed(0)
    cfg = micro_config(objective)
    model = build_model(cfg).eval()
    vit = timm.create_model("vit_tiny_patch16_224", pretrained=False, **timm_kwargs(cfg.encoder)).eval()
    vit.load_state_dict(model.encoder.state_dict(), strict=True)
    images = torch.randn(2, 3, 32, 32)
    ours = model.encoder(images).latent[:, 0]
    theirs = vit(images)  # num_classes=0: the pooled CLS feature
    assert torch.allclose(ours, theirs, atol=1e-5)
    assert torch.allclose(to_timm(model.encoder).eval()(images), theirs, atol=1e-6)


def test_base_encoder_keys_match_timm_vit_b16():
    ours = MaskedViTEncoder(build_config("base").encoder).state_dict()
    vit = timm.create_model("vit_base_patch16_224", pretrained=False, num_classes=0)
    vit.load_state_dict(ours, strict=True)


def test_caption_loss_equals_cross_entropy_over_all_logits_ignoring_pads():
    cfg, decoder, memory = _decoder_and_memory()
    tokens = torch.randint(4, cfg.text.vocab_size, (2, 10))
    tokens[0, 6:] = cfg.text.pad_id
    logits = decoder(tokens[:, :-1], memory)
    reference = torch.nn.functional.cross_entropy(
        logits.flatten(0, 1), tokens[:, 1:].flatten(), ignore_index=cfg.text.pad_id
    )
    assert torch.allclose(decoder.caption_loss(tokens, memory), reference, atol=1e-6)


def test_caption_loss_split_over_micro_batches_sums_to_the_whole_batch_mean():
    """What gradient accumulation relies on: each part's summed NLL over the step's average token count."""
    cfg, decoder, memory = _decoder_and_memory()
    tokens = torch.randint(4, cfg.text.vocab_size, (2, 10))
    tokens[0, 3:] = cfg.text.pad_id  # the parts hold very different numbers of real tokens (2 and 9)
    whole = decoder.caption_loss(tokens, memory)
    per_part = (tokens[:, 1:] != cfg.text.pad_id).sum().item() / 2
    parts = [decoder.caption_loss(tokens[i : i + 1], memory[i : i + 1], per_part) for i in range(2)]
    assert torch.allclose(sum(parts) / 2, whole, atol=1e-6)
    naive = sum(decoder.caption_loss(tokens[i : i + 1], memory[i : i + 1]) for i in range(2)) / 2
    assert not torch.allclose(naive, whole, atol=1e-3)


def test_caption_loss_compiles_whole_without_a_data_dependent_shape_and_equals_the_eager_cpu_loss():
    """The path a GPU or a compiled step takes (pads ignored by the loss) against the CPU's eager one (the head on
    real positions only): one graph (fullgraph fails on a break), the same loss and the same gradients."""
    cfg, decoder, memory = _decoder_and_memory()
    tokens = torch.randint(4, cfg.text.vocab_size, (2, 10))
    tokens[0, 6:] = cfg.text.pad_id
    per_batch = (tokens[:, 1:] != cfg.text.pad_id).sum(dtype=torch.float64) / 3
    compiled = torch.compile(decoder.caption_loss, backend="eager", fullgraph=True)
    for tokens_per_batch in (None, per_batch):
        eager = decoder.caption_loss(tokens, memory, tokens_per_batch)
        eager_grad = torch.autograd.grad(eager, decoder.head.weight)[0]
        static = compiled(tokens, memory, tokens_per_batch)
        static_grad = torch.autograd.grad(static, decoder.head.weight)[0]
        assert torch.allclose(static, eager, atol=1e-6) and torch.allclose(static_grad, eager_grad, atol=1e-6)
