"""The masked pass of MAE and MUG: one seeded masked encoding per batch, as in training, feeds the reconstruction
error and, for MUG, caption likelihood, greedy captions and zero-shot prompt scores.

Captions are read from the masked encoding on purpose: the caption decoder was trained to describe an image from
its visible patches only (and the paper's demo captions that way), so perplexity here is the training loss's
quantity. Masks come from a generator seeded once, so two runs with the same batch size see the same masks.
The pass costs up to 8x the plain features per image (greedy captions run the decoder once per token, zero-shot
once per prompt), and a thousand images pin its figures down, so it reads the first `masked_samples` only.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from mug.demo import reconstruction_strip
from mug.evaluation.caption_metrics import bleu4, cider_d, perplexity, sequence_logprob
from mug.evaluation.zero_shot import PromptGrid, caption_scores, prefix_tokens
from mug.generation import GenerationConfig, generate
from mug.image import to_pil
from mug.models import MaskedGenerative
from mug.models.pixel_decoder import masked_patch_mse
from mug.tokenizer import CaptionTokenizer


class MaskedPass:
    """Accumulates the masked pass batch by batch; `metrics()` at the end. Keeps the first `examples` images,
    their reconstruction strips and their generated captions for the report; ignores images after the first
    `masked_samples`."""

    def __init__(
        self,
        model: MaskedGenerative,
        tokenizer: CaptionTokenizer | None,
        grid: PromptGrid,
        seed: int = 0,
        examples: int = 8,
        masked_samples: int = 1000,
    ):
        self.model, self.tokenizer, self.grid, self.examples = model, tokenizer, grid, examples
        self.masked_samples = masked_samples
        self.noise = torch.Generator().manual_seed(seed)
        self.rec_sum, self.samples = 0.0, 0
        self.nll_sum, self.tokens = 0.0, 0
        self.hypotheses: list[str] = []
        self.references: list[str] = []
        self.prompt_scores: list[np.ndarray] = []
        self.originals: list[Image.Image] = []
        self.strips: list[Image.Image] = []
        captions = model.caption_decoder is not None
        self.prompts = prefix_tokens(tokenizer, grid.prompts, model.cfg.text.context_length) if captions else None

    @torch.no_grad()
    def add(self, images: torch.Tensor, tokens: torch.Tensor | None) -> None:
        model, cfg = self.model, self.model.cfg
        keep = self.masked_samples - self.samples
        if keep <= 0:
            return
        images, tokens = images[:keep], tokens[:keep] if tokens is not None else None
        noise = torch.rand(len(images), cfg.encoder.num_patches, generator=self.noise).to(images.device)
        enc = model.encoder(images, cfg.objective.mask_ratio, noise)
        self.samples += len(images)
        self.originals += [to_pil(image) for image in images[: self.examples - len(self.originals)]]
        if model.pixel_decoder is not None:
            pred = model.pixel_decoder(enc.latent, enc.ids_restore)
            mse = masked_patch_mse(pred, images, enc.mask, cfg.encoder.patch_size, cfg.pixel_decoder.norm_pix_loss)
            self.rec_sum += mse.item() * len(images)  # every image has the same number of masked patches
            for i in range(min(len(images), self.examples - len(self.strips))):
                one = slice(i, i + 1)
                strip = reconstruction_strip(model, images[i], enc.latent[one], enc.mask[one], enc.ids_restore[one])
                self.strips.append(strip)
        if model.caption_decoder is not None:
            self._captions(tokens.to(images.device), enc.latent)

    def _captions(self, tokens: torch.Tensor, latent: torch.Tensor) -> None:
        decoder, tok = self.model.caption_decoder, self.tokenizer
        memory = decoder.project_memory(latent)
        logprob, count = sequence_logprob(decoder, tokens, memory, decoder.cfg.pad_id)
        self.nll_sum -= logprob.sum().item()
        self.tokens += int(count.sum())
        generation = GenerationConfig(max_len=decoder.cfg.context_length - 1)  # the context bounds it
        ids = generate(decoder, latent, [tok.bos_id], tok.eos_id, tok.special_ids, generation)
        self.hypotheses += [tok.decode(row) for row in ids]
        self.references += [tok.decode(row.tolist()) for row in tokens]  # as the model sees them: truncated
        self.prompt_scores.append(caption_scores(decoder, memory, self.prompts).cpu().numpy())

    def metrics(self) -> dict[str, float]:
        out = {}
        if self.model.pixel_decoder is not None:
            out["recon/mse"] = self.rec_sum / self.samples
        if self.model.caption_decoder is not None:
            refs = [[r] for r in self.references]
            out["caption/perplexity"] = perplexity(self.nll_sum, self.tokens)
            out["caption/bleu4"] = bleu4(self.hypotheses, refs)
            out["caption/cider"] = cider_d(self.hypotheses, refs)
        return out

    def strip_examples(self) -> list[tuple[Image.Image, Image.Image]]:
        """(original, strip) of the first images."""
        return list(zip(self.originals, self.strips, strict=False))

    def caption_examples(self) -> list[tuple[Image.Image, str, str]]:
        """(original, generated, reference) of the first images."""
        return list(zip(self.originals, self.hypotheses, self.references, strict=False))

    def scores(self) -> np.ndarray | None:
        """Zero-shot prompt scores [N, P] of the first `masked_samples` samples, None without a caption decoder."""
        return np.concatenate(self.prompt_scores) if self.prompt_scores else None
