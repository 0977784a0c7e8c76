"""Reproduce a registered version from its lineage alone: the data revision (fetched again by its DVC address, or
the local shards when they still have the recorded md5), the training config its checkpoint keeps (seed included),
its tokenizer and the version it continued from; then train again and compare with the registered weights. On a
CPU a single-process run is deterministic, so the weights must match bit for bit; elsewhere (a GPU, several
processes) the final losses must match within a tolerance."""

from __future__ import annotations

import math
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from mug.errors import UserError


@dataclass(frozen=True)
class Check:
    what: str
    matched: bool | None  # None: what was re-used, with nothing to compare
    detail: str

    def __str__(self) -> str:
        verdict = {True: "matches: ", False: "DIFFERS: ", None: ""}[self.matched]
        return f"{self.what}: {verdict}{self.detail}"


@dataclass(frozen=True)
class Reproduction:
    checks: list[Check]
    bitwise: bool  # the weights are identical
    reproduced: bool  # bit for bit, or the final losses within the tolerance, on the same data


def _data(version: int, lineage: dict[str, str], recorded: list[str]) -> tuple[list[str], Check]:
    """The shards the version was trained on, and whether their md5 is the one the lineage records."""
    from mug.data.dvc_source import materialize
    from mug.data.loading.urls import expand_shards
    from mug.lineage import data_md5

    expected = lineage.get("data_md5", "unknown")
    if lineage.get("data_source"):
        data = materialize(lineage["data_source"].split(", "))
        md5 = data.lineage["data_md5"]
        return data.shards, Check("data", md5 == expected, f"{lineage['data_source']}, md5 {md5}")
    try:
        md5 = data_md5(expand_shards(recorded))
    except UserError:
        md5 = "missing"
    if md5 != expected:
        raise UserError(
            f"v{version} was trained on {', '.join(recorded)} (md5 {expected}), not on data by DVC address, and "
            f"those shards are {'not here' if md5 == 'missing' else f'different here (md5 {md5})'}: its data "
            "cannot be fetched again"
        )
    return recorded, Check("data", True, f"{', '.join(recorded)}, md5 {md5}")


def _init_from(lineage: dict[str, str], name: str, uri: str | None, tmp: Path) -> Path | None:
    """The registered version this one continued from ("mug-encoder v1" in the lineage), downloaded."""
    from mug.registry import download_model

    init = lineage.get("init_from")
    if not init:
        return None
    match = re.fullmatch(rf"{re.escape(name)} v(\d+)", init)
    if match is None:
        raise UserError(f"the version continued from {init}, which is not a version of {name} in this registry")
    return download_model(int(match.group(1)), tmp / "init", name, uri)


def _weights(registered: Path, reproduced: Path) -> Check:
    import torch
    from safetensors.torch import load_file

    a, b = load_file(registered / "model.safetensors"), load_file(reproduced / "model.safetensors")
    if a.keys() != b.keys():
        return Check("weights", False, f"different tensors ({len(a)} registered, {len(b)} reproduced)")
    same = sum(torch.equal(a[key], b[key]) for key in a)
    if same == len(a):
        return Check("weights", True, f"identical, bit for bit ({len(a)} tensors)")
    largest = max((a[key].float() - b[key].float()).abs().max().item() for key in a)
    return Check("weights", False, f"{len(a) - same} of {len(a)} tensors differ (largest difference {largest:.3g})")


def _losses(registered: dict[str, float], reproduced: dict[str, float], rtol: float) -> Check:
    pairs = ", ".join(f"{k} {registered[k]:.6f} -> {reproduced.get(k, math.nan):.6f}" for k in sorted(registered))
    close = bool(registered) and all(
        math.isclose(v, reproduced.get(k, math.nan), rel_tol=rtol) for k, v in registered.items()
    )
    return Check("final losses", close, f"{pairs or 'none recorded'} (relative tolerance {rtol:g})")


def reproduce(
    version: int,
    name: str,
    uri: str | None,
    out: str | Path,
    device: str | None = None,
    rtol: float = 1e-3,
) -> Reproduction:
    """Train `name` v`version` again into `out` (which must not hold a run yet) from its lineage and compare.
    `device` overrides the recorded one (e.g. cpu, for a bitwise check of a model trained on a GPU)."""
    from mug.checkpoint import read_config
    from mug.lineage import code_version
    from mug.registry import download_model, version_lineage
    from mug.train.config import load_train_config
    from mug.train.loop import train

    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise UserError(f"--out {out} already holds files; give an empty or new folder")
    lineage = version_lineage(version, name, uri)
    with tempfile.TemporaryDirectory(prefix="mug-reproduce-") as tmp:
        registered = download_model(version, Path(tmp) / "registered", name, uri)
        metadata = read_config(registered)[1]
        recorded = metadata.get("train")
        if not recorded:
            raise UserError(f"{name} v{version}: its checkpoint keeps no training config to re-run")
        shards, data = _data(version, lineage, recorded["data"])
        init = _init_from(lineage, name, uri, Path(tmp))
        tokenizer = registered / "tokenizer.json"
        overrides = recorded | {
            "data": shards,
            "out": str(out),
            "tokenizer": str(tokenizer) if tokenizer.is_file() else None,
            "init_from": str(init) if init else None,
            "wandb": "disabled",
        }
        cfg = load_train_config(overrides=overrides | ({"device": device} if device else {}))
        result = train(cfg)
        code = code_version()
        checks = [
            data,
            Check("code", code == lineage.get("code_version"), f"{code} (registered {lineage.get('code_version')})"),
            Check(
                "config (the checkpoint's)",
                None,
                f"{cfg.objective}/{cfg.preset}, {cfg.steps} steps, batch {cfg.batch_size}, seed {cfg.seed}; tokenizer "
                f"{'the registered one' if tokenizer.is_file() else 'none'}"
                + (f"; continued from {lineage['init_from']}" if init else ""),
            ),
            weights := _weights(registered, result.model_dir),
            losses := _losses(metadata.get("final_losses", {}), result.final_losses, rtol),
        ]
    return Reproduction(checks, weights.matched, data.matched and (weights.matched or losses.matched))
