"""What MUG's caption decoder reads from the image, word class by word class.

For each MUG checkpoint, every eval caption's next-token cross-entropy is split by the class of the word each
target token belongs to (shape, count, relation, colour, size, background, texture and other words: the
corpus's vocabulary, `mug.data.synthetic.synth`), twice: with the image's own masked encoding as memory, as in training,
and with another image's (the batch rolled by one), which leaves the decoder only what the text before the word
tells it. The difference (nats per token) is what the image contributes to naming that class; 0 means the
decoder guesses the word from the caption's prior. The caption gradient can only teach the encoder what the
decoder reads, so this shows which labels the caption branch of MUG can push into the features at a budget.

    .venv/bin/python benchmarks/caption_words.py runs/mug/model runs/mug-800/model --data data/eval
"""

from __future__ import annotations

import argparse
import math
import re
from pathlib import Path

import torch
import torch.nn.functional as F

from mug.checkpoint import load_checkpoint
from mug.data.loading.loader import LoaderConfig, make_loader
from mug.data.synthetic.synth import (
    BACKGROUND_WORDS,
    COLOUR_WORDS,
    COUNT_WORDS,
    RELATION_WORDS,
    SHAPE_WORDS,
    SIZE_WORDS,
    TEXTURE_WORDS,
)
from mug.models import MaskedGenerative
from mug.tokenizer import CaptionTokenizer


def _words(phrases) -> set[str]:
    return {word for phrase in phrases for word in phrase.split()}


def word_classes() -> dict[str, set[str]]:
    """Each class's distinctive words; words shared by classes ("of", "the", "a") stay in `other`. A word of two
    classes counts for the first (no colour word is a background word in the corpus)."""
    shapes = _words(p for ps in SHAPE_WORDS.values() for p in ps)
    shapes |= {w + "s" for w in shapes} | {w + "es" for w in shapes}  # plurals: "crosses", "boxes", "stars"
    classes = {
        "shape": shapes,
        "count": _words(p for ps in COUNT_WORDS.values() for p in ps) - {"a", "of"},
        "relation": _words(p for ps in RELATION_WORDS.values() for p in ps) - {"to", "the", "of", "on"},
        "colour": _words(p for ps in COLOUR_WORDS.values() for p in ps),
        "size": _words(p for ps in SIZE_WORDS.values() for p in ps),
        "background": _words(p for ps in BACKGROUND_WORDS.values() for p in ps),
        "texture": _words(p for ps in TEXTURE_WORDS.values() for p in ps) - {""},
    }
    return classes


def token_classes(tokens: torch.Tensor, tokenizer: CaptionTokenizer, classes: dict[str, set[str]]) -> list[list[str]]:
    """The class of the word each token belongs to ([N, T] ids -> names; word pieces `##x` join the word before)."""
    vocab = tokenizer.tokenizer
    out = []
    for row in tokens.tolist():
        pieces = [vocab.id_to_token(i) or "" for i in row]
        words, owner = [], []
        for piece in pieces:
            if piece.startswith("##") and words:
                words[-1] += piece[2:]
            else:
                words.append(piece)
            owner.append(len(words) - 1)
        named = [next((c for c, ws in classes.items() if re.sub(r"\W", "", w) in ws), "other") for w in words]
        out.append([named[j] for j in owner])
    return out


@torch.no_grad()
def measure(
    checkpoint: str, data: list[str], samples: int, batch_size: int, seed: int, mask_ratio: float | None = None
) -> dict[str, dict]:
    """Per class: mean cross-entropy with the image's own memory ("own"), with another image's ("other"), and
    the token count. `mask_ratio` None encodes as in training; 0 lets the decoder see every patch."""
    model, tokenizer, _ = load_checkpoint(checkpoint, need_tokenizer=True)
    if not isinstance(model, MaskedGenerative) or model.caption_decoder is None:
        raise SystemExit(f"{checkpoint} is not a MUG checkpoint (no caption decoder)")
    cfg, decoder, classes = model.cfg, model.caption_decoder, word_classes()
    loader = make_loader(
        LoaderConfig(
            urls=data,
            batch_size=batch_size,
            image_size=cfg.encoder.img_size,
            inputs=("image", "tokens"),
            context_length=cfg.text.context_length,
            train=False,
            num_workers=0,
            seed=seed,
        ),
        tokenizer,
        rank=0,
        world_size=1,
    )
    noise_source = torch.Generator().manual_seed(seed)
    ratio = cfg.objective.mask_ratio if mask_ratio is None else mask_ratio
    sums: dict[str, dict[str, float]] = {}
    seen = 0
    for batch in loader:
        images, tokens = batch["image"][: samples - seen], batch["tokens"][: samples - seen]
        noise = torch.rand(len(images), cfg.encoder.num_patches, generator=noise_source)
        memory = decoder.project_memory(model.encoder(images, ratio, noise).latent)
        targets, names = tokens[:, 1:], token_classes(tokens[:, 1:], tokenizer, classes)
        real = targets != decoder.cfg.pad_id
        for condition, mem in (("own", memory), ("other", memory.roll(1, dims=0))):
            loss = F.cross_entropy(decoder(tokens[:, :-1], mem).flatten(0, 1), targets.flatten(), reduction="none")
            loss = loss.view_as(targets)
            for i, j in real.nonzero().tolist():
                entry = sums.setdefault(names[i][j], {"own": 0.0, "other": 0.0, "tokens": 0})
                entry[condition] += loss[i, j].item()
                entry["tokens"] += condition == "own"
        seen += len(images)
        if seen >= samples:
            break
    return {
        name: {"own": s["own"] / s["tokens"], "other": s["other"] / s["tokens"], "tokens": s["tokens"]}
        for name, s in sums.items()
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoints", nargs="+", help="MUG checkpoint folders (a run's model/)")
    p.add_argument("--data", nargs="+", default=["data/eval"], help="eval shards with clean captions")
    p.add_argument("--samples", type=int, default=1000, help="captions read (default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--seed", type=int, default=0, help="mask seed (default: %(default)s)")
    p.add_argument(
        "--mask-ratio",
        type=float,
        help="patches hidden from the encoder (default: the checkpoint's training ratio); 0 shows the decoder the "
        "whole image, to tell a word hidden by the mask from one the decoder never learned to read",
    )
    args = p.parse_args()
    if args.mask_ratio is not None and not 0 <= args.mask_ratio < 1:
        p.error(f"--mask-ratio must be in [0, 1): the encoder needs a patch to see, got {args.mask_ratio}")
    torch.set_num_threads(2)
    order = ("shape", "count", "relation", "colour", "size", "background", "texture", "other")
    print("Cross-entropy of caption tokens (nats/token), own image -> another image's: what the image adds\n")
    print("| checkpoint | " + " | ".join(order) + " |")
    print("|---|" + "---:|" * len(order))
    for checkpoint in args.checkpoints:
        result = measure(checkpoint, args.data, args.samples, args.batch_size, args.seed, args.mask_ratio)
        cells = []
        for name in order:
            r = result.get(name)
            cells.append("-" if r is None else f"{r['own']:.2f} / {r['other']:.2f}: **{r['other'] - r['own']:+.2f}**")
        print(f"| {'/'.join(Path(checkpoint).parts[-3:-1])} | " + " | ".join(cells) + " |")
    print(
        f"\nchance for a uniform guess among the labels: shape ln 5 = {math.log(5):.2f}, count ln 3 = "
        f"{math.log(3):.2f}, relation ln 4 = {math.log(4):.2f}, colour ln 8 = {math.log(8):.2f}"
    )


if __name__ == "__main__":
    main()
