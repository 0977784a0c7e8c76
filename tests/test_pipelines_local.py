"""mug-pretrain end to end through kfp.local on micro data and a micro model: what it registers, what it keeps
out of production, and where a bad corpus stops it."""

import json
from pathlib import Path

import pytest

from mug.data.synthetic.corpus import NoiseConfig, synthesize_corpus
from mug.errors import UserError
from mug.registry import list_versions, production_score, register_model
from pipelines.local import run_local
from tests.conftest import MICRO

pytestmark = pytest.mark.slow  # make test-fast skips this module


def _corpus(root: Path, noise: NoiseConfig | None = None) -> Path:
    synthesize_corpus(root, 256, 96, shard_size=128, image_size=32, noise=noise or NoiseConfig(), progress=False)
    return root


@pytest.fixture(scope="module")
def web(tmp_path_factory) -> Path:
    return _corpus(tmp_path_factory.mktemp("web"))


def _arguments(web: Path, registry: str) -> dict:
    return {
        "data": [str(web / "train")],
        "data_revision": "test-rev",
        "eval_data": [str(web / "eval")],
        "tokenizer": "",
        "objective": "mug",
        "steps": 6,
        "batch_size": 16,
        "device": "cpu",
        "min_side": 32,
        "settings": {"model": MICRO, "num_workers": 0, "shuffle_buffer": 32, "log_every": 1},
        "wandb": "disabled",
        "eval_max_samples": 64,
        "registry_uri": registry,
    }


def _run_dir(root: Path) -> Path:
    (run,) = [p for p in root.iterdir() if p.name.startswith("mug-pretrain-")]
    return run


def test_pretrain_evaluates_against_the_floor_and_registers_nothing_at_it(web, tmp_path):
    """Six steps of a micro model do not lift it above its random-init floor: the gate keeps it out of the registry
    and the summary says so with the figures; a production model stays where it is."""
    registry = f"sqlite:///{tmp_path / 'registry' / 'mlflow.db'}"
    summary = run_local("mug-pretrain", _arguments(web, registry), tmp_path / "first")

    run = _run_dir(tmp_path / "first")
    model = run / "pretrain" / "model"
    assert {"model.safetensors", "config.json", "tokenizer.json"} <= {p.name for p in model.iterdir()}
    evaluation = run / "evaluate-checkpoint" / "metrics"
    metrics = json.loads((evaluation / "metrics.json").read_text())
    assert metrics["transfer/score_low"] <= 0 <= metrics["transfer/score_high"]
    assert (evaluation / "outcomes.json").is_file() and "floor/probe_cls/shape" in metrics
    assert (run / "evaluate-checkpoint" / "report").read_text().startswith("<!doctype html>")
    assert "data gate" in (run / "validate-data" / "report").read_text().lower()
    assert "not registered: transfer/score" in summary and "not above the random-init floor" in summary
    assert "(floor " in summary and "data gate: passed on 256 samples from 2 shards" in summary
    assert "loss_cap" in summary and f"checkpoint: {model}" in summary
    assert not (tmp_path / "registry").exists()

    # With a production model in the registry, the run leaves it there.
    production = {"transfer/score": 0.5, "transfer/score_low": 0.45, "transfer/score_high": 0.55}
    register_model(model, production, {"note": "by hand"}, uri=registry)
    summary = run_local("mug-pretrain", _arguments(web, registry), tmp_path / "second")
    assert "not registered: transfer/score" in summary and "production stays on v1" in summary
    assert production_score(uri=registry) == (1, 0.5)
    assert [v.version for v in list_versions("mug-encoder", registry)] == [1]


def test_pretrain_stops_at_the_data_gate(tmp_path):
    broken = _corpus(tmp_path / "web", NoiseConfig(corrupt=0.5))
    registry = f"sqlite:///{tmp_path / 'registry' / 'mlflow.db'}"
    with pytest.raises(UserError, match=r"task validate-data failed: data gate failed .*decode_failure_rate") as err:
        run_local("mug-pretrain", _arguments(broken, registry), tmp_path / "runs")
    assert "\n" not in str(err.value)
    assert not (tmp_path / "registry").exists()
    assert not (_run_dir(tmp_path / "runs") / "pretrain").exists()


def test_unknown_parameter_is_named(tmp_path):
    with pytest.raises(UserError, match="mug-pretrain has no parameter stepz"):
        run_local("mug-pretrain", {"stepz": 3}, tmp_path)
