"""Caption tokenizer: a WordPiece model trained on the corpus' captions with HF `tokenizers`.

Stored as a plain `tokenizer.json`, so any HF tokenizer file (bert-base-uncased's, say) drops in: the special
tokens are looked up by name ([BOS]/[EOS] as we train them, or BERT's [CLS]/[SEP]).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

from mug.errors import UserError

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[BOS]", "[EOS]"]
_ALIASES = {
    "pad": ("[PAD]", "<pad>"),
    "bos": ("[BOS]", "[CLS]", "<s>", "<|startoftext|>"),
    "eos": ("[EOS]", "[SEP]", "</s>", "<|endoftext|>"),
}


class CaptionTokenizer:
    def __init__(self, tokenizer: Tokenizer):
        self.tokenizer = tokenizer
        self.pad_id, self.bos_id, self.eos_id = (self._find(role) for role in ("pad", "bos", "eos"))
        added = tokenizer.get_added_tokens_decoder()
        self.special_ids = frozenset(i for i, tok in added.items() if tok.special) | {
            self.pad_id,
            self.bos_id,
            self.eos_id,
        }

    def _find(self, role: str) -> int:
        for name in _ALIASES[role]:
            token_id = self.tokenizer.token_to_id(name)
            if token_id is not None:
                return token_id
        raise UserError(f"tokenizer has no {role.upper()} token (looked for {', '.join(_ALIASES[role])})")

    @classmethod
    def train(cls, captions: Iterable[str], vocab_size: int = 8000, min_frequency: int = 2) -> CaptionTokenizer:
        """BERT-style uncased WordPiece learned from the captions (empty ones are skipped)."""
        texts = [c for c in captions if c and c.strip()]
        if not texts:
            raise UserError("no non-empty captions to train the tokenizer on")
        tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
        tok.normalizer = normalizers.BertNormalizer(lowercase=True)
        tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tok.decoder = decoders.WordPiece()
        trainer = trainers.WordPieceTrainer(
            vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=SPECIAL_TOKENS, show_progress=False
        )
        tok.train_from_iterator(texts, trainer=trainer, length=len(texts))
        return cls(tok)

    @classmethod
    def from_file(cls, path: str | Path) -> CaptionTokenizer:
        path = Path(path)
        if not path.is_file():
            raise UserError(f"tokenizer file {path} does not exist")
        try:
            return cls(Tokenizer.from_file(str(path)))
        except Exception as err:  # tokenizers raises a bare Exception on malformed JSON
            raise UserError(f"tokenizer file {path} is not a valid HF tokenizer.json: {err}") from err

    def save(self, path: str | Path) -> None:
        self.tokenizer.save(str(path))

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size()

    def ids(self, text: str) -> list[int]:
        """Word-piece ids of `text`, without special tokens."""
        return self.tokenizer.encode(text, add_special_tokens=False).ids

    def encode_prefix(self, text: str) -> list[int]:
        """BOS + the prefix's ids: the start of a caption to be continued."""
        return [self.bos_id, *self.ids(text)]

    def encode(self, texts: Sequence[str], context_length: int) -> torch.Tensor:
        """[N, context_length] ids: BOS, the caption truncated to fit, EOS, then PAD."""
        out = torch.full((len(texts), context_length), self.pad_id, dtype=torch.long)
        for row, enc in enumerate(self.tokenizer.encode_batch(list(texts), add_special_tokens=False)):
            ids = [self.bos_id, *enc.ids[: context_length - 2], self.eos_id]
            out[row, : len(ids)] = torch.tensor(ids)
        return out

    def decode(self, ids: Iterable[int]) -> str:
        return self.tokenizer.decode([i for i in ids if i not in self.special_ids], skip_special_tokens=True)
