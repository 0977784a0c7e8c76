"""Evaluate a checkpoint of any objective with its encoder frozen, next to the same architecture at random
initialisation (the floor), and write metrics.json, confusion.json, outcomes.json and report.html.

metrics.json is one flat object of floats; the names:
  probe_{pool}/{label}       linear-probe top-1 accuracy on the held-out half of the labelled eval set (C chosen
                             on a validation part of the training half)
  knn_{pool}/{label}         weighted kNN (cosine, k = 20, T = 0.07) top-1 accuracy, same split
  digits/probe_{pool}, digits/knn_{pool}   the same on scikit-learn's 8x8 digits, upsampled
  floor/<any of the above>   the same probe on the random-init model's features (mug.evaluation.floor)
  probe_cls/{label}_low, _high; lift/probe_cls/{label} (accuracy - floor), its _low and _high: 95% bootstrap
                             intervals over the held-out images (also for digits/probe_cls)
  transfer/score             the share of the headroom above the floor that pre-training closed, pooled over the
                             CLS probes of every label and the digits: sum(accuracy - floor) / sum(1 - floor).
                             0 for a random-init model, 1 when every task is solved; tasks the floor already solves
                             add nothing. The one number the registry compares models by (`TRANSFER_SCORE`).
  transfer/score_low, transfer/score_high   its 95% interval
  zero_shot/{label}          mug and clip: prompt-scoring accuracy on the same held-out half (size, colour, shape;
                             mug's on its held-out images among the first `masked_samples`)
  recon/mse                  mae and mug: the model's loss_rec on masked patches, seeded masks
  caption/perplexity, caption/bleu4, caption/cider   mug: on the eval captions, greedy captions from BOS
(the last four from the masked pass, on the first `masked_samples` images)
where {pool} is `cls` (CLS token) or `mean` (mean of the patch tokens) of the unmasked image, and {label} each
label name found in the samples' .json ("labels": {"shape": ..., "colour": ..., ...}). Each label gets its own
seeded 50/50 stratified split; digits get one too. confusion.json holds, under the same names, {"labels",
"matrix"} (rows true, columns predicted) for the CLS probes and zero-shot. outcomes.json holds, per task, which
held-out images the model's and the floor's CLS probe got right: what the model gate pairs two models on.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from mug.checkpoint import CheckpointError, load_checkpoint
from mug.data.loading.loader import LoaderConfig, make_loader
from mug.device import pick_device
from mug.errors import UserError, writing
from mug.evaluation.digits import digit_images, to_model_input
from mug.evaluation.features import POOLS, FeatureBank, digit_features
from mug.evaluation.floor import Features, floor_features
from mug.evaluation.masked import MaskedPass
from mug.evaluation.probes import accuracy, confusion, knn, linear_probes, split
from mug.evaluation.report import render_html
from mug.evaluation.results import Evaluation
from mug.evaluation.significance import (
    OUTCOMES,
    TRANSFER_SCORE,
    TaskOutcome,
    summarize,
    write_outcomes,
)
from mug.evaluation.zero_shot import PromptGrid, clip_scores
from mug.history import HISTORY, read_history
from mug.image import to_pil
from mug.models import MaskedGenerative, Objective
from mug.models.objectives import CLIP
from mug.reporting import write_text_atomic
from mug.tokenizer import CaptionTokenizer

HEADLINE = "probe_cls"  # the probe the transfer score and its intervals are read from


@dataclass
class EvalOptions:
    batch_size: int = 64
    max_samples: int | None = None  # caps the eval samples and the digits
    device: str = "cpu"
    num_workers: int = 0
    seed: int = 0
    examples: int = 8  # reconstruction strips and captions shown in the report
    masked_samples: int = 1000  # mae/mug: the masked pass (reconstruction, captions, zero-shot) reads this many
    progress: bool = True


def _transfer(
    ev: Evaluation, task: str, features: Features, floor: Features, labels: np.ndarray, seed: int
) -> np.ndarray:
    """Probe and kNN on both pools for one task (a label name, or "digits"), on the model's features and on the
    floor's, with the same split; records the CLS probe's hits per held-out image in `ev.outcomes`. Returns the
    held-out indices."""
    train, test = split(labels, seed)
    _, counts = np.unique(labels[test], return_counts=True)
    ev.chance[task] = float(counts.max() / counts.sum())
    hits = {}
    runs = [(prefix, feats, kind) for prefix, feats in (("", features), ("floor/", floor)) for kind in POOLS]
    probed = linear_probes([(f[kind][train], labels[train], f[kind][test]) for _, f, kind in runs], seed)
    for (prefix, feats, kind), predicted in zip(runs, probed, strict=True):
        ev.metrics[prefix + metric_name(f"probe_{kind}", task)] = accuracy(predicted, labels[test])
        if kind == "cls":
            hits[prefix] = predicted == labels[test]
            if not prefix:
                ev.confusion[metric_name("probe_cls", task)] = confusion(labels[test], predicted)
        predicted = knn(feats[kind][train], labels[train], feats[kind][test])
        ev.metrics[prefix + metric_name(f"knn_{kind}", task)] = accuracy(predicted, labels[test])
    ev.outcomes[task] = TaskOutcome(features["keys"][test].tolist(), hits[""], hits["floor/"])
    return test


def _intervals(ev: Evaluation) -> None:
    """The headline probe's intervals, lifts over the floor and the transfer score, from the outcomes."""
    summary = summarize(ev.outcomes)
    for task in ev.outcomes:
        name = metric_name(HEADLINE, task)
        for end in ("_low", "_high"):
            ev.metrics[name + end] = summary[f"{task}/accuracy{end}"]
        for end in ("", "_low", "_high"):
            ev.metrics[f"lift/{name}{end}"] = summary[f"{task}/lift{end}"]
    for end in ("", "_low", "_high"):
        ev.metrics[TRANSFER_SCORE + end] = summary["score" + end]


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
    masked: MaskedPass | None = None,
) -> tuple[Features, list[dict | None]]:
    """One pass over the eval shards (at most `opts.max_samples`): the features (with the samples' "keys") and
    the labels; `masked`, when given, sees every batch too."""
    captions = masked is not None and masked.model.caption_decoder is not None
    inputs = ("image", "tokens") if captions else ("image",)
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
    labels: list[dict | None] = []
    keys: list[str] = []
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
            keys += batch["key"][:keep]
            bar.update(keep)
            if len(labels) == opts.max_samples:
                break
    if not labels:
        raise UserError(f"no samples could be read from {' '.join(map(str, data_urls))}")
    return bank.arrays() | {"keys": np.array(keys, dtype=str)}, labels


def _digits(model: Objective, digits: torch.Tensor, device: torch.device, opts: EvalOptions) -> Features:
    features = digit_features(model.encoder, digits, opts.batch_size, device, opts.progress)
    return features | {"keys": np.array([f"digit-{i}" for i in range(len(digits))])}


def run_evaluation(checkpoint_dir: str | Path, data_urls: list[str], opts: EvalOptions) -> Evaluation:
    """Load the checkpoint, read the eval set once (features, and the masked pass for mae/mug), embed the
    digits, do the same with the random-init floor (or take it from the cache), then fit and score every probe
    on both and put intervals on the headline probe and the transfer score."""
    directory = Path(checkpoint_dir)
    device = pick_device(opts.device)
    model, tokenizer, _ = load_checkpoint(directory, device)
    history = read_history(directory / HISTORY)  # a damaged one is named before the long read of the data
    name = model.cfg.objective.name
    text = isinstance(model, CLIP) or getattr(model, "caption_decoder", None) is not None
    if text and tokenizer is None:
        raise CheckpointError(f"checkpoint {directory} has no tokenizer.json, which a '{name}' model needs")
    grid = PromptGrid.build()
    masked = None
    if isinstance(model, MaskedGenerative):
        masked = MaskedPass(model, tokenizer, grid, opts.seed, opts.examples, opts.masked_samples)
    features, labels = _read_eval_set(model, tokenizer, data_urls, device, opts, masked)
    digits, digit_labels = digit_images(opts.max_samples, opts.seed)
    ev = Evaluation(str(directory), name, [str(u) for u in data_urls], len(labels), len(digit_labels))
    ev.history = history
    digit_feats = _digits(model, digits, device, opts)

    def read_with(floor_model: Objective) -> tuple[Features, Features]:
        return _read_eval_set(floor_model, None, data_urls, device, opts)[0], _digits(floor_model, digits, device, opts)

    floor, floor_digits, ev.floor_cached = floor_features(
        model.cfg, data_urls, opts.max_samples, opts.seed, device, read_with, features["keys"]
    )

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
        subset = [{k: f[have] for k, f in part.items()} for part in (features, floor)]
        test = _transfer(ev, label, *subset, y, opts.seed)
        scored = test[have[test] < len(zero_shot[label])] if zero_shot and label in zero_shot else test[:0]
        if len(scored):  # held-out images among those scored (mug scores the first `masked_samples`)
            predicted = zero_shot[label][have[scored]]
            ev.metrics[f"zero_shot/{label}"] = accuracy(predicted, y[scored])
            ev.confusion[f"zero_shot/{label}"] = confusion(y[scored], predicted)
    if not any(labels):
        ev.notes.append("the eval samples carry no labels: only digits, captions and reconstruction are measured")

    first = np.unique(digit_labels, return_index=True)[1]  # one image of each digit
    ev.digits = [to_pil(image) for image in to_model_input(digits[first], model.cfg.encoder.img_size)]
    _transfer(ev, "digits", digit_feats, floor_digits, digit_labels, opts.seed)
    _intervals(ev)
    return ev


def evaluate_checkpoint(
    checkpoint_dir: str | Path, data_urls: list[str], out_dir: str | Path, opts: EvalOptions | None = None
) -> dict[str, float]:
    """Evaluate, write metrics.json, confusion.json, outcomes.json and report.html to `out_dir`; returns the
    metrics."""
    out = Path(out_dir)
    with writing("the evaluation report"):
        out.mkdir(parents=True, exist_ok=True)  # before the evaluation: a place that takes no files fails fast
    ev = run_evaluation(checkpoint_dir, data_urls, opts or EvalOptions())
    with writing("the evaluation report"):
        write_text_atomic(out / "metrics.json", json.dumps(ev.metrics, indent=2, sort_keys=True) + "\n")
        write_text_atomic(out / "confusion.json", json.dumps(ev.confusion, indent=2) + "\n")
        write_outcomes(ev.outcomes, out / OUTCOMES)
        write_text_atomic(out / "report.html", render_html(ev))
    return ev.metrics
