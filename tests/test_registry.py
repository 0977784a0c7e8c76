"""The model registry against real sqlite registries: promotion rule, artifacts, concurrent registrations, CLI."""

import json
import math
import multiprocessing
import re
import shutil

import pytest
import torch
from mlflow import MlflowClient

from mug.checkpoint import load_checkpoint, save_checkpoint
from mug.cli import main
from mug.errors import UserError
from mug.models import build_model
from mug.promotion import Evidence
from mug.registry import (
    Registration,
    download_model,
    link_to_wandb,
    list_versions,
    production_score,
    read_model_card,
    register_model,
)
from tests.conftest import limit_file_size, micro_config
from tests.test_promotion import evidence

LINEAGE = {"data_md5": "d41d8cd98f00b204e9800998ecf8427e", "data_revision": "abc123", "pipeline_run": "run-42"}


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory, tokenizer):
    torch.manual_seed(0)
    model = build_model(micro_config("mug", text={"vocab_size": tokenizer.vocab_size}))
    metadata = {"train": {"objective": "mug", "preset": "tiny", "steps": 3}, "code_version": "0.1.0+gtest", "step": 3}
    path = save_checkpoint(tmp_path_factory.mktemp("ckpt") / "model", model, tokenizer, metadata)
    (path / "history.jsonl").write_text(json.dumps({"step": 1, "loss": 1.0}) + "\n")
    return path


@pytest.fixture(scope="session")
def empty_registry(tmp_path_factory):
    """One migrated database (creating one takes seconds), copied for each test."""
    folder = tmp_path_factory.mktemp("template")
    assert production_score(uri=f"sqlite:///{folder}/mlflow.db") is None  # no database: none is created
    assert not (folder / "mlflow.db").exists()
    MlflowClient(tracking_uri=f"sqlite:///{folder}/mlflow.db")
    return folder


@pytest.fixture
def uri(empty_registry, tmp_path):
    shutil.copytree(empty_registry, tmp_path / "registry")
    return f"sqlite:///{tmp_path}/registry/mlflow.db"


def scored(score: float, half_width: float = 0.05) -> dict[str, float]:
    """An evaluation's headline figures: the transfer score and its interval."""
    return {
        "transfer/score": score,
        "transfer/score_low": score - half_width,
        "transfer/score_high": score + half_width,
    }


def register(checkpoint, uri, score, **kwargs):
    return register_model(checkpoint, scored(score) | {"probe_cls/shape": 0.5}, LINEAGE, uri=uri, **kwargs)


def test_first_registration_above_the_floor_becomes_production(checkpoint, uri):
    at_floor = register(checkpoint, uri, 0.02)  # its interval holds 0: not above the random-init floor
    assert not at_floor.promoted and "not above the random-init floor" in at_floor.reason
    reg = register(checkpoint, uri, 0.5)
    assert (reg.version, reg.promoted, reg.aliases) == (2, True, ["candidate", "production"])
    assert reg.production_version is None and reg.model_uri == "models:/mug-encoder/2"
    assert production_score(uri=uri) == (2, 0.5)


def test_only_a_model_better_beyond_the_noise_moves_production(checkpoint, uri):
    """No outcomes stored: the unpaired rule, whose intervals, widened by the training noise, must not overlap."""
    register(checkpoint, uri, 0.5)
    better = register(checkpoint, uri, 0.8)
    assert better.promoted and (better.production_version, better.production_score) == (1, 0.5)
    worse, close = register(checkpoint, uri, 0.7), register(checkpoint, uri, 0.9)
    assert not worse.promoted and not close.promoted and worse.aliases == ["candidate"]
    assert "not clearly better, production stays" in close.reason and "v2" in close.reason
    assert register(checkpoint, uri, 0.95, training_noise=0).promoted  # apart by the images' noise alone
    assert production_score(uri=uri) == (5, 0.95)
    assert [(v.version, v.aliases) for v in list_versions(uri=uri)] == [
        (5, ["candidate", "production"]),
        (4, []),
        (3, []),
        (2, []),
        (1, []),
    ]


def test_a_retraining_run_compares_with_production_measured_on_the_same_data(checkpoint, uri):
    """Production scored 0.9 on older eval data, 0.4 next to the new model on today's: 0.75 beats it."""
    register(checkpoint, uri, 0.9)
    retrained = register(checkpoint, uri, 0.75, baseline=Evidence(scored(0.4)))
    assert retrained.promoted and "production v1's 0.4000" in retrained.reason
    assert not register(checkpoint, uri, 0.5, baseline=Evidence(scored(0.4))).promoted


def test_outcomes_stored_with_production_pair_the_next_candidate(checkpoint, uri, tmp_path):
    """The registry keeps each version's per-image outcomes; the next registration is tested against them."""
    rates = {"shape": (0.40, 0.14), "count": (0.50, 0.30)}
    first = evidence(rates, seed=1)
    assert register_model(checkpoint, first.metrics, LINEAGE, uri=uri, outcomes=first.outcomes).promoted
    reseeded = evidence(rates, seed=2)
    again = register_model(checkpoint, reseeded.metrics, LINEAGE, uri=uri, outcomes=reseeded.outcomes)
    assert not again.promoted and "paired bootstrap" in again.reason
    better = evidence({t: (m + 0.2, f) for t, (m, f) in rates.items()}, seed=3)
    moved = register_model(checkpoint, better.metrics, LINEAGE, uri=uri, outcomes=better.outcomes)
    assert moved.promoted and "better beyond the noise" in moved.reason
    tags = MlflowClient(tracking_uri=uri, registry_uri=uri).get_model_version("mug-encoder", "3").tags
    assert float(tags["gate.difference_with_training_noise_low"]) > 0 and tags["gate.paired"] == "1.0"
    card = read_model_card(3, uri=uri)
    assert "## Promotion" in card and "better beyond the noise" in card and "| task | accuracy" in card
    assert "outcomes.json" in {p.name for p in download_model(3, tmp_path / "dl", uri=uri).iterdir()}


def test_nan_or_missing_score_never_promotes(checkpoint, uri):
    first = register(checkpoint, uri, math.nan)
    assert not first.promoted and production_score(uri=uri) is None and "missing or NaN" in first.reason
    missing = register_model(checkpoint, {"probe_cls/shape": 0.9}, LINEAGE, uri=uri)
    assert not missing.promoted and missing.aliases == ["candidate"]
    assert register(checkpoint, uri, 0.1).promoted
    assert not register(checkpoint, uri, math.nan).promoted
    assert production_score(uri=uri) == (3, 0.1)


def test_artifacts_download_as_a_loadable_checkpoint(checkpoint, uri, tmp_path):
    reg = register(checkpoint, uri, 0.5)
    folder = download_model(reg.version, tmp_path / "download", uri=uri)
    names = {"model.safetensors", "config.json", "tokenizer.json", "history.jsonl", "MODEL_CARD.md"}
    assert {p.name for p in folder.iterdir()} == names
    model, tokenizer, metadata = load_checkpoint(folder, need_tokenizer=True)
    original, _, _ = load_checkpoint(checkpoint)
    weights, expected = model.state_dict(), original.state_dict()
    assert weights.keys() == expected.keys() and all(torch.equal(weights[k], expected[k]) for k in weights)
    assert tokenizer is not None and metadata["code_version"] == "0.1.0+gtest"
    card = (folder / "MODEL_CARD.md").read_text()
    assert card == read_model_card(reg.version, uri=uri)
    for text in [*LINEAGE.values(), "0.1.0+gtest", "**transfer/score 0.5000** [0.4500, 0.5500]", "`mug` encoder",
                 "3 steps", "no production yet", f"mug registry reproduce {reg.version} --uri {uri}\n"]:  # fmt: skip
        assert text in card
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    version = client.get_model_version("mug-encoder", "1")
    assert version.tags["lineage.data_md5"] == LINEAGE["data_md5"] and float(version.tags["transfer/score"]) == 0.5
    run = client.get_run(version.run_id)
    assert run.data.metrics["transfer/score"] == 0.5 and run.data.params["lineage.pipeline_run"] == "run-42"
    assert run.info.status == "FINISHED"


@pytest.mark.slow
def test_concurrent_registrations_get_distinct_versions_and_the_best_wins(checkpoint, tmp_path):
    """Three processes started together on a registry with no database yet: they also race to create it."""
    uri = f"sqlite:///{tmp_path}/fresh/mlflow.db"
    scores = [0.4, 0.9, 0.6]  # +-0.05: whichever order they land in, 0.9 ends in production
    spawn = multiprocessing.get_context("spawn")  # a forked child would share the parent's sqlite connections
    procs = [
        spawn.Process(target=register_model, args=(str(checkpoint), scored(s), LINEAGE, "mug-encoder", uri))
        for s in scores
    ]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(120)
    assert [proc.exitcode for proc in procs] == [0, 0, 0]
    versions = list_versions(uri=uri)
    assert sorted(v.version for v in versions) == [1, 2, 3]
    assert sorted(v.score for v in versions) == sorted(scores)
    assert [v.score for v in versions if "production" in v.aliases] == [0.9]


def test_link_to_wandb_skips_without_a_key_or_offline(checkpoint, monkeypatch):
    reg = Registration("mug-encoder", 1, ["candidate"], False, "", 0.5, None, None, "models:/mug-encoder/1")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    assert link_to_wandb(checkpoint, reg).startswith("W&B Registry: skipped (no WANDB_API_KEY)")
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    monkeypatch.setenv("WANDB_MODE", "offline")
    assert "WANDB_MODE=offline cannot link" in link_to_wandb(checkpoint, reg)


def test_a_missing_checkpoint_is_a_user_error(tmp_path, uri):
    with pytest.raises(UserError, match="does not exist"):
        register_model(tmp_path / "nope", {"transfer/score": 1.0}, LINEAGE, uri=uri)


def test_a_registry_whose_folder_cannot_exist_is_named_in_one_line(checkpoint, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(UserError, match=rf"could not write the model registry .*\({blocker}/registry\): Not a dir"):
        register(checkpoint, f"sqlite:///{blocker}/registry/mlflow.db", 0.5)


def _register_with_file_size_limit(checkpoint, uri: str, limit: int, queue) -> None:
    """register_model in a process whose files cannot grow past `limit` bytes, as on a full disk: puts the
    error's type and message, or None."""
    limit_file_size(limit)
    try:
        register(checkpoint, uri, 0.9)
        queue.put(None)
    except Exception as err:  # noqa: BLE001 - the parent asserts on what it was
        queue.put((type(err).__name__, str(err)))


@pytest.mark.slow
def test_a_registration_that_cannot_be_written_is_one_line_and_production_stays(checkpoint, uri, tmp_path):
    first = register(checkpoint, uri, 0.5)
    weights = (checkpoint / "model.safetensors").stat().st_size
    spawn = multiprocessing.get_context("spawn")
    queue = spawn.Queue()
    proc = spawn.Process(target=_register_with_file_size_limit, args=(checkpoint, uri, weights // 2, queue))
    proc.start()
    kind, message = queue.get(timeout=120)
    proc.join(60)
    assert kind == "UserError" and message.startswith(f"could not write the model registry {uri}"), message
    assert "\n" not in message and re.search("File too large|disk I/O error|database or disk is full", message)
    assert [(v.version, v.aliases) for v in list_versions(uri=uri)] == [(first.version, ["candidate", "production"])]
    again = register(checkpoint, uri, 0.9)  # the registry is still whole: the next registration lands
    assert again.promoted and again.version == first.version + 1


def test_cli_list_show_promote(checkpoint, uri, capsys):
    register(checkpoint, uri, 0.5)
    register(checkpoint, uri, 0.4)
    assert main(["registry", "list", "--uri", uri]) == 0
    rows = capsys.readouterr().out.splitlines()
    assert rows[1].split()[:3] == ["2", "candidate", "0.4000"] and "run-42" in rows[1]
    assert rows[2].split()[:3] == ["1", "production", "0.5000"]

    assert main(["registry", "show", "production", "--uri", uri]) == 0
    out = capsys.readouterr().out
    assert out.startswith("mug-encoder v1 (aliases: production)") and LINEAGE["data_md5"] in out

    assert main(["registry", "promote", "2", "--uri", uri]) == 0
    assert capsys.readouterr().out.strip() == "production: v1 -> v2"
    assert production_score(uri=uri) == (2, 0.4)
    assert main(["registry", "promote", "1", "--alias", "rollback-test", "--uri", uri]) == 0
    assert capsys.readouterr().out.strip() == "rollback-test: none -> v1"

    for argv, message in [
        (["show", "7"], "no version or alias '7' (versions: 1, 2; aliases:"),
        (["promote", "abc"], "no version or alias 'abc'"),
        (["list", "--name", "other"], "has no model named 'other'"),
    ]:
        assert main(["registry", *argv, "--uri", uri]) == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and message in err


def test_the_pipeline_step_registers_with_the_model_artifacts_lineage(checkpoint, uri, capsys, monkeypatch):
    """`mug.steps.register`, what the register_model component calls with its artifacts' metadata."""
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    from mug.steps import LINEAGE_KEYS, model_metadata, numbers, register

    summary = {"train": {"objective": "mug", "preset": "tiny"}, "steps": 3, "code_version": "0.1.0"}
    assert tuple(model_metadata(summary, {"data_md5": "abc", "data_revision": "r1"})) == LINEAGE_KEYS

    metrics = scored(0.5) | {"objective": "mug", "promoted": True}
    assert numbers(metrics) == scored(0.5)  # strings and flags are not metrics
    model_meta = {"objective": "mug", "data_md5": "abc", "data_revision": "", "init_from": None, "steps": 3}
    reg = register(checkpoint, metrics, model_meta, "run-7", "mug-encoder", uri)
    tags = MlflowClient(tracking_uri=uri, registry_uri=uri).get_model_version("mug-encoder", str(reg.version)).tags
    assert (tags["lineage.data_md5"], tags["lineage.steps"], tags["lineage.pipeline_run"]) == ("abc", "3", "run-7")
    assert "lineage.data_revision" not in tags and "lineage.init_from" not in tags  # empty values are not lineage
    linked = f"W&B Registry: skipped (no WANDB_API_KEY); mug-encoder v{reg.version} is in the MLflow registry only"
    assert capsys.readouterr().out.strip().splitlines()[-1] == linked
    assert (
        register(
            checkpoint,
            scored(0.8),
            model_meta,
            "run-8",
            "mug-encoder",
            uri,
            baseline=scored(0.7),
        ).promoted
        is False
    )  # against production on the same data
    from mug.steps import decide_promotion

    promote, reason = decide_promotion(Evidence(scored(0.9)), uri, "mug-encoder", baseline=Evidence(scored(0.6)))
    assert promote and "production v1's 0.6000" in reason  # the baseline's figures, the registry's version
    assert not decide_promotion(Evidence(scored(0.9)), uri, "mug-encoder", Evidence(scored(0.6)), training_noise=0.2)[0]
