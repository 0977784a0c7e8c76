"""Caption tokenizer: a WordPiece model learned from the corpus' captions, run by HF `tokenizers`.

Stored as a plain `tokenizer.json`, so any HF tokenizer file (bert-base-uncased's, say) drops in: the special
tokens are looked up by name ([BOS]/[EOS] as we train them, or BERT's [CLS]/[SEP]).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers

from mug.errors import UserError

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[BOS]", "[EOS]"]
_WORD_CACHE_SIZE = 200_000
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
        self._word_ids: dict[str, list[int]] | None = {} if _bert_style(tokenizer) else None
        self._added_first_chars = "".join({tok.content[:1] for tok in added.values()})

    def _find(self, role: str) -> int:
        for name in _ALIASES[role]:
            token_id = self.tokenizer.token_to_id(name)
            if token_id is not None:
                return token_id
        raise UserError(f"tokenizer has no {role.upper()} token (looked for {', '.join(_ALIASES[role])})")

    @classmethod
    def train(cls, captions: Iterable[str], vocab_size: int = 8000, min_frequency: int = 2) -> CaptionTokenizer:
        """BERT-style uncased WordPiece vocabulary learned from the captions (empty ones are skipped): the
        special tokens, every character (word-initial and `##` continuation) and the most frequent words.

        Learned here rather than with HF's WordPiece trainer, whose merges break ties in hash-map order that
        changes from process to process: the same captions must give the same tokenizer.json (a DVC output)
        and the same token ids (an exactly resumed run retrains nothing different). Rare words fall back to
        characters."""
        tok = Tokenizer(models.WordPiece({"[UNK]": 0}, unk_token="[UNK]"))
        tok.normalizer = normalizers.BertNormalizer(lowercase=True)
        tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tok.decoder = decoders.WordPiece()
        words: Counter[str] = Counter()
        for caption in captions:
            if caption and caption.strip():
                words.update(w for w, _ in tok.pre_tokenizer.pre_tokenize_str(tok.normalizer.normalize_str(caption)))
        if not words:
            raise UserError("no non-empty captions to train the tokenizer on")
        alphabet = sorted({ch for word in words for ch in word})
        pieces = SPECIAL_TOKENS + alphabet + [f"##{ch}" for ch in alphabet]
        known = set(pieces)
        frequent = [w for w, n in sorted(words.items(), key=lambda kv: (-kv[1], kv[0])) if n >= min_frequency]
        frequent = [w for w in frequent if w not in known][: max(0, vocab_size - len(pieces))]
        tok.model = models.WordPiece({t: i for i, t in enumerate(pieces + frequent)}, unk_token="[UNK]")
        tok.add_special_tokens(SPECIAL_TOKENS)
        return cls(tok)

    @classmethod
    def from_file(cls, path: str | Path) -> CaptionTokenizer:
        path = Path(path)
        if not path.is_file():
            raise UserError(f"tokenizer file {path} {'is a directory' if path.is_dir() else 'does not exist'}")
        if path.stat().st_size == 0:
            raise UserError(f"tokenizer file {path} is empty")
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
        out = np.full((len(texts), context_length), self.pad_id, dtype=np.int64)
        for row, ids in zip(out, self._batch_ids(texts), strict=True):
            ids = ids[: context_length - 2]
            row[0], row[1 : len(ids) + 1], row[len(ids) + 1] = self.bos_id, ids, self.eos_id
        return torch.from_numpy(out)

    def _batch_ids(self, texts: Sequence[str]) -> list[list[int]]:
        """Word-piece ids of each text. HF's BERT normalisation dominates the cost of short captions, so for a
        BERT-style tokenizer a printable-ASCII caption is tokenised word by word from a cache instead (the same
        ids: lower-casing is all its normalisation does there, and words are split on spaces first; the speed-up
        is in docs/benchmarks.md, "Measured choices in the code")."""
        ids: list[list[int] | None] = [None] * len(texts)
        if self._word_ids is not None:
            for i, text in enumerate(texts):
                if text.isascii() and text.isprintable() and not any(c in text for c in self._added_first_chars):
                    ids[i] = [piece for word in text.lower().split() for piece in self._word(word)]
        rest = [i for i, found in enumerate(ids) if found is None]
        # `_fast`: no character offsets, which nobody reads here; a third less time per caption.
        for i, enc in zip(
            rest, self.tokenizer.encode_batch_fast([texts[i] for i in rest], add_special_tokens=False), strict=True
        ):
            ids[i] = enc.ids
        return ids

    def _word(self, word: str) -> list[int]:
        pieces = self._word_ids.get(word)
        if pieces is None:
            if len(self._word_ids) >= _WORD_CACHE_SIZE:  # web captions hold millions of distinct words
                self._word_ids.clear()
            pieces = self._word_ids[word] = self.tokenizer.encode(word, add_special_tokens=False).ids
        return pieces

    def decode(self, ids: Iterable[int]) -> str:
        return self.tokenizer.decode([i for i in ids if i not in self.special_ids], skip_special_tokens=True)


def _bert_style(tokenizer: Tokenizer) -> bool:
    """Lower-casing BERT normalisation, BERT pre-tokenisation, WordPiece: what `CaptionTokenizer.train` builds and
    bert-base-uncased uses. On printable ASCII its only normalisation is lower-casing."""
    norm = tokenizer.normalizer
    return (
        isinstance(norm, normalizers.BertNormalizer)
        and norm.lowercase
        and norm.clean_text
        and isinstance(tokenizer.pre_tokenizer, pre_tokenizers.BertPreTokenizer)
        and isinstance(tokenizer.model, models.WordPiece)
    )
