import pytest
import torch

from mug.generation import GenerationConfig, generate
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


def test_unknown_strategy_is_named(decoder_and_latent):
    decoder, latent = decoder_and_latent
    with pytest.raises(ValueError, match="strategy 'nucleus'"):
        _generate(decoder, latent, strategy="nucleus")
