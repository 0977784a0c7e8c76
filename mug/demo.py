"""The caption demo of the paper's authors: mask an image, reconstruct it, and continue a caption prefix.

The strip shows (masked | masked + reconstruction | reconstruction). Predicted patches are in per-patch
normalised space (norm-pix loss), so they are mapped back with each target patch's own mean and std, as
MAE's visualisations do.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image

from mug.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from mug.config import build_config
from mug.data.synthetic.synth import sample_pairs
from mug.errors import UserError, writing
from mug.generation import GenerationConfig, generate
from mug.image import load_image, to_pil, to_tensor
from mug.models import MaskedGenerative, build_model
from mug.models.pixel_decoder import normalise_patches, patchify, unpatchify
from mug.sanity import fit_batch
from mug.tokenizer import CaptionTokenizer


@dataclass
class DemoResult:
    caption: str | None  # None when the checkpoint has no caption decoder (MAE)
    strip: Image.Image


def reconstruction_strip(model: MaskedGenerative, image: torch.Tensor, latent, mask, ids_restore) -> Image.Image:
    """(masked | masked + reconstruction | reconstruction) for one image [3, H, W], side by side."""
    patch = model.cfg.encoder.patch_size
    pred = model.pixel_decoder(latent, ids_restore)[0].float()  # [L, p*p*3]
    target = patchify(image[None], patch)[0]
    if model.cfg.pixel_decoder.norm_pix_loss:
        _, mean, std = normalise_patches(target)
        pred = pred * std + mean
    keep = (1 - mask[0])[:, None]  # [L, 1]
    grey = torch.zeros_like(target)  # 0 in normalised space: the dataset-mean colour
    masked = unpatchify((target * keep + grey * (1 - keep))[None], patch)[0]
    pasted = unpatchify((target * keep + pred * (1 - keep))[None], patch)[0]
    recon = unpatchify(pred[None], patch)[0]
    panels = [to_pil(t) for t in (masked, pasted, recon)]
    w, h = panels[0].size
    strip = Image.new("RGB", (3 * w + 8, h), (255, 255, 255))
    for i, panel in enumerate(panels):
        strip.paste(panel, (i * (w + 4), 0))
    return strip


@torch.no_grad()
def caption_demo(
    model: MaskedGenerative,
    tokenizer: CaptionTokenizer | None,
    image: torch.Tensor,
    prefix: str = "a photo of a",
    mask_ratio: float = 0.75,
    generation: GenerationConfig | None = None,
    seed: int = 0,
) -> DemoResult:
    """Encode one normalised image [3, H, W] with a seeded random mask; reconstruct and caption from it."""
    if model.pixel_decoder is None:
        raise CheckpointError("the caption demo needs an 'mae' or 'mug' checkpoint (one with a pixel decoder)")
    if not 0 < mask_ratio < 1:
        raise UserError(f"mask ratio must be in (0, 1), got {mask_ratio}")
    model.eval()
    noise = torch.rand(1, model.cfg.encoder.num_patches, generator=torch.Generator().manual_seed(seed))
    enc = model.encoder(image[None], mask_ratio, noise.to(image.device))
    strip = reconstruction_strip(model, image, enc.latent, enc.mask, enc.ids_restore)
    caption = None
    if model.caption_decoder is not None and tokenizer is not None:
        ids = generate(
            model.caption_decoder,
            enc.latent,
            tokenizer.encode_prefix(prefix),
            tokenizer.eos_id,
            tokenizer.special_ids,
            generation,
            generator=torch.Generator(device=image.device).manual_seed(seed),
        )[0]
        caption = tokenizer.decode(ids)
    return DemoResult(caption, strip)


def caption_file(
    checkpoint: str | Path,
    image_path: str | Path,
    prefix: str,
    mask_ratio: float,
    generation: GenerationConfig,
    strip_path: str | Path | None = None,
) -> DemoResult:
    """The `mug caption` command: checkpoint + image file -> caption, and the strip saved if asked."""
    img = load_image(image_path)
    model, tokenizer, _ = load_checkpoint(checkpoint)
    if not isinstance(model, MaskedGenerative):
        raise CheckpointError(
            f"checkpoint {checkpoint} is a '{model.cfg.objective.name}' model; the caption demo needs 'mae' or 'mug'"
        )
    result = caption_demo(model, tokenizer, to_tensor(img, model.cfg.encoder.img_size), prefix, mask_ratio, generation)
    if strip_path is not None:
        with writing("the strip"):
            Path(strip_path).parent.mkdir(parents=True, exist_ok=True)
            try:
                result.strip.save(strip_path)
            except ValueError as err:  # Pillow knows no format by that extension
                raise UserError(f"could not write the strip {strip_path}: {err} (use .png or .jpg)") from err
    return result


def build_demo_checkpoint(out: str | Path, pairs: int = 8, steps: int = 500, seed: int = 0) -> Path:
    """Overfit a tiny MUG on a few synthetic pairs and save it with its images: a checkpoint to demo with
    before any real training has run. Returns the checkpoint directory; the images are under out/images."""
    out = Path(out)
    torch.manual_seed(seed)
    samples = sample_pairs(pairs, size=64, seed=seed)
    captions = [caption for _, caption in samples]
    tokenizer = CaptionTokenizer.train(captions, vocab_size=512, min_frequency=1)
    cfg = build_config("tiny", overrides={"text": {"vocab_size": tokenizer.vocab_size, "pad_id": tokenizer.pad_id}})
    model = build_model(cfg)
    batch = {
        "image": torch.stack([to_tensor(img, cfg.encoder.img_size) for img, _ in samples]),
        "tokens": tokenizer.encode(captions, cfg.text.context_length),
    }
    history = fit_batch(model, batch, steps, progress=True)
    (out / "images").mkdir(parents=True, exist_ok=True)
    for i, (img, caption) in enumerate(samples):
        img.save(out / "images" / f"{i}.png")
        (out / "images" / f"{i}.txt").write_text(caption + "\n")
    return save_checkpoint(
        out / "checkpoint",
        model,
        tokenizer,
        {"demo": True, "steps": steps, "initial_losses": history[0], "final_losses": history[-1]},
    )
