"""Zero-shot classification: score prompts that name label values, predict the best-scoring value.

The prompts are the start of the corpus' clean captions for the main object ("a photo of a small red circle
..."), one per combination of the slot labels' values in the synthetic vocabulary (2 sizes x 8 colours x 5 shapes
= 80), so one grid classifies three labels. A value's score is the log-sum-exp over the prompts that name it:
its probability with the other slots marginalised out.

MUG scores a prompt by the sum of its token log-probabilities given the image (a caption prefix, so no EOS);
CLIP by its logit, the scaled cosine similarity of image and prompt embeddings.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from mug.data.synthetic.synth import COLOURS, SHAPES, SIZES
from mug.evaluation.caption_metrics import sequence_logprob
from mug.models.objectives import CLIP
from mug.models.text import TextTransformer
from mug.tokenizer import CaptionTokenizer

TEMPLATE = "a photo of a {size} {colour} {shape}"
VOCABULARY = {"size": tuple(SIZES), "colour": tuple(COLOURS), "shape": SHAPES}
SCORE_ELEMENTS = 2**25  # log-probabilities held at once while scoring prompts: bounds memory at ~128 MiB


@dataclass(frozen=True)
class PromptGrid:
    slots: tuple[str, ...]
    values: dict[str, tuple[str, ...]]
    prompts: tuple[str, ...]  # itertools.product order over `slots`

    @classmethod
    def build(cls, template: str = TEMPLATE, values: dict[str, tuple[str, ...]] = VOCABULARY) -> PromptGrid:
        slots = tuple(values)
        prompts = tuple(
            template.format(**dict(zip(slots, combo, strict=True)))
            for combo in itertools.product(*(values[s] for s in slots))
        )
        return cls(slots, values, prompts)

    def predict(self, scores: np.ndarray) -> dict[str, np.ndarray]:
        """Prompt scores [N, P] -> per slot, the predicted value of each sample (the other slots marginalised)."""
        grid = torch.from_numpy(scores).view(len(scores), *(len(self.values[s]) for s in self.slots))
        out = {}
        for axis, slot in enumerate(self.slots, start=1):
            others = [a for a in range(1, grid.dim()) if a != axis]
            marginal = grid.logsumexp(dim=others) if others else grid
            out[slot] = np.asarray(self.values[slot])[marginal.argmax(dim=1).numpy()]
        return out


def prefix_tokens(tokenizer: CaptionTokenizer, prompts: tuple[str, ...], context_length: int) -> torch.Tensor:
    """[P, T] BOS + each prompt's ids, PAD after; T the longest prompt, not the whole context."""
    rows = [tokenizer.encode_prefix(p)[:context_length] for p in prompts]
    out = torch.full((len(rows), max(map(len, rows))), tokenizer.pad_id, dtype=torch.long)
    for i, row in enumerate(rows):
        out[i, : len(row)] = torch.tensor(row)
    return out


@torch.no_grad()
def caption_scores(decoder: TextTransformer, memory: torch.Tensor, prompts: torch.Tensor) -> torch.Tensor:
    """[N, P] log p(prompt | image) for memory [N, M, D] and prompt tokens [P, T], in chunks of prompts."""
    n, length = memory.shape[0], prompts.shape[1]
    chunk = max(1, SCORE_ELEMENTS // (n * length * decoder.cfg.vocab_size))
    scores = []
    for part in prompts.split(chunk):
        tokens = part.to(memory.device).repeat(n, 1)  # [N * c, T], image-major
        logprob, _ = sequence_logprob(decoder, tokens, memory.repeat_interleave(len(part), dim=0), decoder.cfg.pad_id)
        scores.append(logprob.view(n, len(part)))
    return torch.cat(scores, dim=1)


@torch.no_grad()
def clip_scores(model: CLIP, pooled: torch.Tensor, prompts: torch.Tensor) -> torch.Tensor:
    """[N, P] CLIP logits of pooled image features [N, D] (the encoder's, before `image_proj`) against prompts
    [P, T] tokenised as whole captions (BOS ... EOS)."""
    image = F.normalize(model.image_proj(pooled).float(), dim=-1)
    text = F.normalize(model.embed_text(prompts.to(pooled.device)).float(), dim=-1)
    scale = model.logit_scale.exp()  # bounded by training (`CLIP.after_optimizer_step`)
    return scale * image @ text.t()
