"""The tokenizer's corpus: captions straight from shards (only the .txt members are read), and the tokenizer
learned from them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from mug.data.loading.tar import tar_members
from mug.data.loading.urls import ShardError, Urls, expand_shards, reading_shard
from mug.errors import UserError, writing
from mug.tokenizer import CaptionTokenizer


def iter_captions(urls: Urls) -> Iterator[str]:
    """Every caption of the shards, in order; a shard that is not a tar is a UserError naming it."""
    for shard in expand_shards(urls):
        try:
            with reading_shard(shard) as stream:
                for _, caption in tar_members(stream, lambda name: name.endswith(".txt")):
                    yield caption.decode("utf-8", errors="replace")
        except ShardError as err:
            raise UserError(f"cannot read captions from shard {shard} ({err})") from err


def train_tokenizer(urls: Urls, out: str | Path, vocab_size: int = 8192, min_frequency: int = 2) -> CaptionTokenizer:
    """Learn the WordPiece vocabulary of the shards' captions and save it as `out` (a tokenizer.json)."""
    with writing("the tokenizer"):  # before training, so a bad --out fails at once
        Path(out).parent.mkdir(parents=True, exist_ok=True)
    tokenizer = CaptionTokenizer.train(iter_captions(urls), vocab_size=vocab_size, min_frequency=min_frequency)
    with writing("the tokenizer"):
        tokenizer.save(out)
    return tokenizer
