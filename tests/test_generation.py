import re

import pytest
import torch

from mug.checkpoint import save_checkpoint
from mug.cli import main
from mug.config import ConfigError
from mug.generation import GenerationConfig, generate
from mug.models import build_model
from mug.models.text import KVCache, TextTransformer
from tests.conftest import micro_config

EOS, SPECIAL = 3, frozenset({0, 1, 2, 3})


@pytest.fixture()
def decoder_and_latent():
    torch.manual_seed(0)
    cfg = micro_config("mug")
    decoder = TextTransformer(cfg.text, image_width=cfg.encoder.width).double().eval()
    latent = torch.randn(3, 5, cfg.encoder.width, dtype=torch.double)
    return decoder, latent


def _boost(decoder, ids):
    """Give `ids` a huge logit bias, so the model prefers them whatever it sees."""
    head = torch.nn.Linear(decoder.cfg.width, decoder.cfg.vocab_size, dtype=torch.double)
    with torch.no_grad():
        head.weight.copy_(decoder.head.weight)
        head.bias.zero_()
        head.bias[ids] = 1e3
    decoder.head = head


def _generate(decoder, latent, prefix=(2, 7, 9), **kw):
    return generate(decoder, latent, list(prefix), EOS, SPECIAL, GenerationConfig(**kw))


def test_cache_in_chunks_equals_full_forward(decoder_and_latent):
    decoder, latent = decoder_and_latent
    memory = decoder.project_memory(latent)
    tokens = torch.randint(4, 64, (3, 12))
    cache = KVCache.empty(len(decoder.blocks))
    chunks = [
        decoder(tokens[:, :5], memory, cache),
        decoder(tokens[:, 5:6], memory, cache),
        decoder(tokens[:, 6:], memory, cache),
    ]
    assert cache.length == 12
    assert torch.allclose(torch.cat(chunks, 1), decoder(tokens, memory), atol=1e-10)


@pytest.mark.parametrize("strategy", ["greedy", "beam"])
def test_cached_generation_equals_full_recomputation(decoder_and_latent, strategy):
    decoder, latent = decoder_and_latent
    cached = _generate(decoder, latent, strategy=strategy, max_len=12, use_cache=True)
    full = _generate(decoder, latent, strategy=strategy, max_len=12, use_cache=False)
    assert cached == full
    assert all(len(ids) > 2 for ids in cached)


def test_cached_sampling_equals_full_recomputation_for_the_same_seed(decoder_and_latent):
    decoder, latent = decoder_and_latent
    runs = [
        generate(
            decoder,
            latent,
            [2, 7],
            EOS,
            SPECIAL,
            GenerationConfig(strategy="topk", top_k=10, top_p=0.9, max_len=12, use_cache=use_cache),
            generator=torch.Generator().manual_seed(3),
        )
        for use_cache in (True, False)
    ]
    assert runs[0] == runs[1]


def test_beam_search_with_one_beam_equals_greedy(decoder_and_latent):
    decoder, latent = decoder_and_latent
    for prefix in ([2], [2, 7, 9], [2, 11]):
        assert _generate(decoder, latent, prefix, strategy="beam", num_beams=1, max_len=12) == _generate(
            decoder, latent, prefix, strategy="greedy", max_len=12
        )


def test_eos_ends_greedy_and_beam_captions(decoder_and_latent):
    decoder, latent = decoder_and_latent
    _boost(decoder, [EOS])
    assert _generate(decoder, latent, strategy="greedy") == [[7, 9]] * 3
    assert _generate(decoder, latent, strategy="beam") == [[7, 9]] * 3


@pytest.mark.parametrize("strategy", ["greedy", "beam", "topk"])
def test_special_tokens_are_never_emitted_and_max_len_holds(decoder_and_latent, strategy):
    decoder, latent = decoder_and_latent
    _boost(decoder, [0, 1, 2])  # PAD, UNK and BOS become the likeliest tokens
    out = _generate(decoder, latent, strategy=strategy, max_len=8)
    for ids in out:
        assert ids[:2] == [7, 9]  # the prefix is kept
        assert len(ids) <= 8
        assert not set(ids) & SPECIAL


def test_max_len_is_capped_by_the_context_length(decoder_and_latent):
    decoder, latent = decoder_and_latent
    out = _generate(decoder, latent, strategy="greedy", max_len=1000)
    assert all(len(ids) <= decoder.cfg.context_length - 1 for ids in out)


@pytest.mark.parametrize(
    "setting, message",
    [
        ({"temperature": 0.0}, "temperature must be > 0, got 0.0"),
        ({"temperature": float("nan")}, "temperature must be > 0, got nan"),
        ({"top_p": 0.0}, r"top_p must be in \(0, 1\], got 0.0"),
        ({"top_p": 1.5}, r"top_p must be in \(0, 1\], got 1.5"),
        ({"num_beams": 0}, "num_beams must be an integer >= 1, got 0"),
        ({"top_k": -1}, "top_k must be an integer >= 0, got -1"),
        ({"max_len": 0}, "max_len must be an integer >= 1, got 0"),
        ({"strategy": "nucleus"}, "strategy 'nucleus' is unknown"),
    ],
)
def test_generation_settings_out_of_range_are_named(setting, message):
    with pytest.raises(ConfigError, match=message):
        GenerationConfig(**setting)


def test_a_prefix_that_leaves_nothing_to_generate_is_named(decoder_and_latent):
    decoder, latent = decoder_and_latent
    with pytest.raises(ConfigError, match="prefix is 2 tokens long, and max_len 2 leaves no token"):
        _generate(decoder, latent, max_len=2)
    with pytest.raises(ConfigError, match="prefix is 15 tokens long, and the context of 15 tokens leaves no token"):
        _generate(decoder, latent, prefix=[2] + [7] * 15, max_len=100)
    assert all(len(ids) == 3 for ids in _generate(decoder, latent, max_len=3))  # one token after the prefix


@pytest.fixture(scope="module")
def caption_files(tmp_path_factory, tokenizer, pairs):
    root = tmp_path_factory.mktemp("caption")
    cfg = micro_config("mug", text={"vocab_size": tokenizer.vocab_size, "pad_id": tokenizer.pad_id})
    save_checkpoint(root / "ckpt", build_model(cfg), tokenizer)
    pairs[0][0].save(root / "image.png")
    return str(root / "ckpt"), str(root / "image.png")


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--temperature", "0"], "temperature must be > 0, got 0.0"),
        (["--top-p", "1.5"], r"top_p must be in \(0, 1\], got 1.5"),
        (["--strategy", "beam", "--beams", "0"], "num_beams must be an integer >= 1, got 0"),
        (["--prefix", "a photo of a", "--max-len", "3"], "prefix is 4 tokens long, and max_len 3 leaves no token"),
    ],
)
def test_caption_cli_names_a_bad_generation_setting_in_one_line(caption_files, flags, message, capsys):
    assert main(["caption", *caption_files, *flags]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert re.match(f"mug caption: error: .*{message}", line), line
