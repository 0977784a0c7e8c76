import random

import pytest
import torch
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers

from mug.errors import UserError
from mug.tokenizer import CaptionTokenizer


def test_trained_tokenizer_round_trips_captions(tokenizer, pairs):
    caption = pairs[0][1]
    ids = tokenizer.encode([caption], context_length=32)[0].tolist()
    assert ids[0] == tokenizer.bos_id and tokenizer.eos_id in ids
    assert tokenizer.decode(ids) == caption
    assert (tokenizer.pad_id, tokenizer.bos_id, tokenizer.eos_id) == (0, 2, 3)


def test_encode_truncates_keeping_eos_and_pads(tokenizer):
    batch = tokenizer.encode(["a photo of a small red circle on a grey background", "a"], context_length=6)
    assert batch.shape == (2, 6)
    assert batch[0, -1].item() == tokenizer.eos_id  # truncated, still terminated
    assert batch[1, 3:].tolist() == [tokenizer.pad_id] * 3


def test_save_and_load(tmp_path, tokenizer):
    tokenizer.save(tmp_path / "tokenizer.json")
    loaded = CaptionTokenizer.from_file(tmp_path / "tokenizer.json")
    assert loaded.ids("a red circle") == tokenizer.ids("a red circle")
    assert loaded.special_ids == tokenizer.special_ids


def test_a_bert_style_tokenizer_json_drops_in(tmp_path):
    vocab = {t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "red", "circle"])}
    tok = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.add_special_tokens(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])
    tok.save(str(tmp_path / "bert.json"))
    bert = CaptionTokenizer.from_file(tmp_path / "bert.json")
    assert (bert.pad_id, bert.bos_id, bert.eos_id) == (0, 2, 3)
    assert 4 in bert.special_ids  # [MASK] is never generated either
    assert bert.encode(["A red circle"], 8)[0].tolist() == [2, 5, 6, 7, 3, 0, 0, 0]


def test_empty_caption_set_is_refused():
    with pytest.raises(UserError, match="no non-empty captions"):
        CaptionTokenizer.train(["", "   "])


def test_bad_tokenizer_files_are_named(tmp_path):
    with pytest.raises(UserError, match="missing.json does not exist"):
        CaptionTokenizer.from_file(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(UserError, match="bad.json is not a valid HF tokenizer.json"):
        CaptionTokenizer.from_file(tmp_path / "bad.json")


def test_the_word_cache_gives_hf_ids_on_every_kind_of_caption(tokenizer):
    rng = random.Random(0)
    words = ["a", "Red", "CIRCLE", "photo", "dog's", "u.s.a.", "well-known", "123", "x9", "zebra"]
    marks = ["", ",", "!", "...", "(", ")", " ", "  ", "~"]
    odd = ["café", "日本", "\t", "\n", "[PAD]", "[", "\x07"]  # each sends its caption to HF
    captions = ["", " ", "IMG_2041.JPG", "click to enlarge >>", "www.example.com/a?b=c"]
    for i in range(400):
        pieces = [rng.choice(words) + rng.choice(marks + odd * (i % 2)) + " " * rng.randint(0, 1) for _ in range(12)]
        captions.append("".join(pieces))
    assert tokenizer._word_ids is not None  # the cached path runs
    got = tokenizer.encode(captions, context_length=40)
    reference = [e.ids for e in tokenizer.tokenizer.encode_batch(captions, add_special_tokens=False)]
    expected = torch.full((len(captions), 40), tokenizer.pad_id)
    for row, ids in zip(expected, reference, strict=True):
        ids = [tokenizer.bos_id, *ids[:38], tokenizer.eos_id]
        row[: len(ids)] = torch.tensor(ids)
    assert torch.equal(got, expected)
    assert sum(c.isascii() and c.isprintable() and "[" not in c for c in captions) > 150  # both paths were taken
