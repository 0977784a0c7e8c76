"""Evaluate a checkpoint of any objective with its encoder frozen, and write metrics.json, confusion.json and
report.html.

metrics.json is one flat object of floats; the names:
  probe_{pool}/{label}       linear-probe top-1 accuracy on the held-out half of the labelled eval set
  knn_{pool}/{label}         weighted kNN (cosine, k = 20, T = 0.07) top-1 accuracy, same split
  digits/probe_{pool}, digits/knn_{pool}   the same on scikit-learn's 8x8 digits, upsampled
  zero_shot/{label}          mug and clip: prompt-scoring accuracy on the same held-out half (size, colour, shape)
  recon/mse                  mae and mug: the model's loss_rec on masked patches, seeded masks
  caption/perplexity, caption/bleu4, caption/cider   mug: on the eval captions, greedy captions from BOS
  transfer/score             the mean of every probe_cls accuracy (each label and digits): the one number the
                             registry compares models by (`TRANSFER_SCORE`)
where {pool} is `cls` (CLS token) or `mean` (mean of the patch tokens) of the unmasked image, and {label} each
label name found in the samples' .json ("labels": {"shape": ..., "colour": ..., ...}). Each label gets its own
seeded 50/50 stratified split; digits get one too. confusion.json holds, under the same names, {"labels",
"matrix"} (rows true, columns predicted) for the CLS probes and zero-shot.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from mug.checkpoint import CheckpointError, load_checkpoint
from mug.data.loader import LoaderConfig, make_loader
from mug.errors import UserError
from mug.evaluation.digits import digit_images, to_model_input
from mug.evaluation.features import POOLS, FeatureBank, digit_features
from mug.evaluation.masked import MaskedPass
from mug.evaluation.probes import accuracy, confusion, knn, linear_probe, split
from mug.evaluation.report import render_html
from mug.evaluation.zero_shot import PromptGrid, clip_scores
from mug.image import to_pil
from mug.models import MaskedGenerative, Objective
from mug.models.objectives import CLIP
from mug.reporting import write_text_atomic
from mug.tokenizer import CaptionTokenizer
from mug.train.distributed import pick_device
from mug.train.state import HISTORY, read_history

TRANSFER_SCORE = "transfer/score"


@dataclass
class EvalOptions:
    batch_size: int = 64
    max_samples: int | None = None  # caps the eval samples and the digits
    device: str = "cpu"
    num_workers: int = 0
    seed: int = 0
    examples: int = 8  # reconstruction strips and captions shown in the report
    progress: bool = True


@dataclass
class Evaluation:
    """Everything the report shows."""

    checkpoint: str
    objective: str
    data: list[str]
    samples: int
    digit_samples: int
    metrics: dict[str, float] = field(default_factory=dict)
    confusion: dict[str, dict] = field(default_factory=dict)
    chance: dict[str, float] = field(default_factory=dict)  # per label and "digits": majority class on the test half
    notes: list[str] = field(default_factory=list)
    history: list[dict] = field(default_factory=list)
    strips: list[tuple[Image.Image, Image.Image]] = field(default_factory=list)  # (original, strip)
    digits: list[Image.Image] = field(default_factory=list)  # one image per digit, as the model sees it
    captions: list[tuple[Image.Image, str, str]] = field(default_factory=list)


def _transfer(ev: Evaluation, task: str, features: dict[str, np.ndarray], labels: np.ndarray, seed: int) -> np.ndarray:
    """Probe and kNN on both pools for one task (a label name, or "digits"); returns the test indices."""
    train, test = split(labels, seed)
    _, counts = np.unique(labels[test], return_counts=True)
    ev.chance[task] = float(counts.max() / counts.sum())
    for kind in POOLS:
        x = features[kind]
        predicted = linear_probe(x[train], labels[train], x[test])
        ev.metrics[metric_name(f"probe_{kind}", task)] = accuracy(predicted, labels[test])
        if kind == "cls":
            ev.confusion[metric_name("probe_cls", task)] = confusion(labels[test], predicted)
        ev.metrics[metric_name(f"knn_{kind}", task)] = accuracy(knn(x[train], labels[train], x[test]), labels[test])
    return test


def metric_name(method: str, task: str) -> str:
    """`probe_cls/shape` for a label, `digits/probe_cls` for the digits (see the module docstring)."""
    return f"digits/{method}" if task == "digits" else f"{method}/{task}"


def _label_arrays(labels: list[dict | None]) -> dict[str, np.ndarray]:
    """Label name -> values as strings, None where a sample lacks it; names in first-seen order."""
    names = list(dict.fromkeys(name for item in labels if item for name in item))

    def value(item: dict | None, name: str) -> str | None:
        return None if not item or item.get(name) is None else str(item[name])

    return {name: np.array([value(item, name) for item in labels], dtype=object) for name in names}


def _read_eval_set(
    model: Objective,
    tokenizer: CaptionTokenizer | None,
    data_urls: list[str],
    device: torch.device,
    opts: EvalOptions,
    grid: PromptGrid,
) -> tuple[FeatureBank, MaskedPass | None, list[dict | None]]:
    """One pass over the eval shards (at most `opts.max_samples`): features, the masked pass, the labels."""
    inputs = ("image", "tokens") if getattr(model, "caption_decoder", None) is not None else ("image",)
    loader = make_loader(
        LoaderConfig(
            urls=data_urls,
            batch_size=opts.batch_size,
            image_size=model.cfg.encoder.img_size,
            inputs=inputs,
            context_length=model.cfg.text.context_length,
            train=False,
            num_workers=opts.num_workers,
            seed=opts.seed,
        ),
        tokenizer,
        rank=0,
        world_size=1,
    )
    bank = FeatureBank()
    masked = None
    if isinstance(model, MaskedGenerative):
        masked = MaskedPass(model, tokenizer, grid, opts.seed, opts.examples)
    labels: list[dict | None] = []
    desc = "features + captions" if "tokens" in inputs else "features"
    with tqdm(total=opts.max_samples, desc=desc, unit="sample", disable=not opts.progress) as bar:
        for batch in loader:
            keep = len(batch["key"])
            if opts.max_samples is not None:
                keep = min(keep, opts.max_samples - len(labels))
            images = batch["image"][:keep].to(device)
            bank.add(model.encoder, images)
            if masked is not None:
                masked.add(images, batch["tokens"][:keep] if "tokens" in batch else None)
            labels += (batch.get("labels") or [None] * keep)[:keep]
            bar.update(keep)
            if len(labels) == opts.max_samples:
                break
    return bank, masked, labels


def run_evaluation(checkpoint_dir: str | Path, data_urls: list[str], opts: EvalOptions) -> Evaluation:
    """Load the checkpoint, read the eval set once (features, and the masked pass for mae/mug), embed the
    digits, then fit and score every probe."""
    directory = Path(checkpoint_dir)
    device = pick_device(opts.device)
    model, tokenizer, _ = load_checkpoint(directory, device)
    name = model.cfg.objective.name
    text = isinstance(model, CLIP) or getattr(model, "caption_decoder", None) is not None
    if text and tokenizer is None:
        raise CheckpointError(f"checkpoint {directory} has no tokenizer.json, which a '{name}' model needs")
    grid = PromptGrid.build()
    bank, masked, labels = _read_eval_set(model, tokenizer, data_urls, device, opts, grid)
    if not labels:
        raise UserError(f"no samples could be read from {' '.join(map(str, data_urls))}")
    digits, digit_labels = digit_images(opts.max_samples, opts.seed)
    ev = Evaluation(str(directory), name, [str(u) for u in data_urls], len(labels), len(digit_labels))
    ev.history = read_history(directory / HISTORY)
    features = bank.arrays()

    zero_shot = None
    if masked is not None:
        ev.metrics.update(masked.metrics())
        ev.strips, ev.captions = masked.strip_examples(), masked.caption_examples()
        scores = masked.scores()
        zero_shot = grid.predict(scores) if scores is not None else None
    elif isinstance(model, CLIP):
        pooled = torch.from_numpy(features[model.cfg.objective.pool]).to(device)
        prompts = tokenizer.encode(list(grid.prompts), model.cfg.text.context_length)
        zero_shot = grid.predict(clip_scores(model, pooled, prompts).cpu().numpy())

    for label, values in _label_arrays(labels).items():
        have = np.flatnonzero(values != None)  # noqa: E711 (elementwise over an object array)
        if len(np.unique(values[have].astype(str))) < 2 or len(have) < 4:
            ev.notes.append(f"label '{label}' skipped: it needs 4 samples and 2 values, has {len(have)} samples")
            continue
        y = values[have].astype(str)
        test = _transfer(ev, label, {k: f[have] for k, f in features.items()}, y, opts.seed)
        if zero_shot is not None and label in zero_shot:
            predicted = zero_shot[label][have][test]
            ev.metrics[f"zero_shot/{label}"] = accuracy(predicted, y[test])
            ev.confusion[f"zero_shot/{label}"] = confusion(y[test], predicted)
    if not any(labels):
        ev.notes.append("the eval samples carry no labels: only digits, captions and reconstruction are measured")

    first = np.unique(digit_labels, return_index=True)[1]  # one image of each digit
    ev.digits = [to_pil(image) for image in to_model_input(digits[first], model.cfg.encoder.img_size)]
    digit_feats = digit_features(model.encoder, digits, opts.batch_size, device, opts.progress)
    _transfer(ev, "digits", digit_feats, digit_labels, opts.seed)
    ev.metrics[TRANSFER_SCORE] = transfer_score(ev.metrics)
    return ev


def transfer_score(metrics: dict[str, float]) -> float:
    """One number to rank models by: the mean linear-probe accuracy (CLS) over the labels and the digits."""
    probes = [v for k, v in metrics.items() if k.startswith("probe_cls/") or k == "digits/probe_cls"]
    return float(np.mean(probes)) if probes else float("nan")


def evaluate_checkpoint(
    checkpoint_dir: str | Path, data_urls: list[str], out_dir: str | Path, opts: EvalOptions | None = None
) -> dict[str, float]:
    """Evaluate, write metrics.json, confusion.json and report.html to `out_dir`; returns the metrics."""
    ev = run_evaluation(checkpoint_dir, data_urls, opts or EvalOptions())
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / "metrics.json", json.dumps(ev.metrics, indent=2, sort_keys=True) + "\n")
    write_text_atomic(out / "confusion.json", json.dumps(ev.confusion, indent=2) + "\n")
    write_text_atomic(out / "report.html", render_html(ev))
    return ev.metrics
