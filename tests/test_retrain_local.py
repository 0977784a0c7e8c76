"""mug-retrain as a schedule runs it, through kfp.local on data addressed by a DVC branch: it trains only when the
data (or the code) differs from what production was trained on, and says so when it does not."""

import pytest

from mug.data.dvc_source import materialize
from mug.data.synthetic.corpus import synthesize_corpus
from mug.registry import list_versions, production_lineage, production_score, register_model
from mug.steps import pretrain, register
from pipelines.local import _task_outputs, run_local
from tests.conftest import MICRO, add_shards, commit_data, dvc_repo, git

pytestmark = pytest.mark.slow  # make test-fast skips this module

SETTINGS = {"model": MICRO, "num_workers": 0, "shuffle_buffer": 32, "log_every": 1, "wandb": "disabled"}
SCORE = {"transfer/score": 0.5, "transfer/score_low": 0.45, "transfer/score_high": 0.55}


def _run(root):
    (run,) = root.glob("mug-retrain-*")
    return run


def test_a_scheduled_retrain_skips_unchanged_data_and_trains_on_a_new_revision(tmp_path):
    repo = dvc_repo(tmp_path / "repo", tmp_path / "remote")
    synthesize_corpus(repo / "data", 256, 96, shard_size=128, image_size=32, progress=False)
    commit_data(repo, "data", "v1")
    git("branch", "-M", "main", cwd=repo)
    data, registry = f"dvc://{repo}@main#data/train", f"sqlite:///{tmp_path / 'registry' / 'mlflow.db'}"

    # Production v1 was trained on the data main holds now, by this code.
    summary = pretrain([data], tmp_path / "production", SETTINGS | {"steps": 2, "batch_size": 16, "device": "cpu"})
    lineage = materialize([data]).lineage | {"code_version": summary["code_version"]}
    register_model(tmp_path / "production", SCORE, lineage, uri=registry)

    arguments = {
        "data": [data],
        "eval_data": [f"dvc://{repo}@main#data/eval"],
        "tokenizer": "",
        "steps": 4,
        "batch_size": 16,
        "device": "cpu",
        "min_side": 32,
        "settings": SETTINGS,
        "wandb": "disabled",
        "eval_max_samples": 64,
        "registry_uri": registry,
    }
    skipped = run_local("mug-retrain", arguments, tmp_path / "night-1")
    assert f"nothing new since production v1: data {lineage['data_md5']} at main (" in skipped
    assert "force=True retrains anyway" in skipped and "continued from" not in skipped
    assert not (_run(tmp_path / "night-1") / "pretrain").exists()

    # New shards arrive as a new DVC revision on main: the next night trains on them.
    add_shards(repo / "data" / "train", seed=1)
    commit = commit_data(repo, "data", "v2")
    trained = run_local("mug-retrain", arguments, tmp_path / "night-2")
    assert "retrain: new data " in trained and f"at main ({commit}) (production v1: {lineage['data_md5']}" in trained
    assert "continued from mug-encoder v1" in trained and f"revision {commit}" in trained
    # Six steps of a micro model stay at the random-init floor, so the gate keeps production where it is.
    assert "not registered: transfer/score" in trained and production_score(uri=registry) == (1, 0.5)

    # Had the gate promoted it (here by hand, with the run's own lineage), the next night has nothing new.
    model = _task_outputs(_run(tmp_path / "night-2"), "pretrain")["model"]
    trigger = f"data main ({commit})"
    better = {"transfer/score": 0.9, "transfer/score_low": 0.85, "transfer/score_high": 0.95}
    assert register(model.path, better, model.metadata, "night-2", "mug-encoder", registry, trigger=trigger).promoted
    version, recorded = production_lineage(uri=registry)
    assert (version, recorded["data_revision"], recorded["data_ref"], recorded["trigger"]) == (
        2,
        commit,
        "main",
        trigger,
    )
    assert recorded["data_source"] == f"dvc://{repo}@{commit}#data/train"
    again = run_local("mug-retrain", arguments, tmp_path / "night-3")
    assert "nothing new since production v2" in again and not (_run(tmp_path / "night-3") / "pretrain").exists()
    assert [v.version for v in list_versions("mug-encoder", registry)] == [2, 1]
