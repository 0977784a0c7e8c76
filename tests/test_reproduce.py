"""`mug registry reproduce`: a registered version trained again from its lineage alone (the DVC revision of its
data, the config and seed its checkpoint keeps, its tokenizer, the version it continued) gives the same weights,
bit for bit, on a CPU."""

import pytest

from mug.cli import main
from mug.data.dvc_source import materialize
from mug.data.synthetic.corpus import synthesize_corpus
from mug.registry import download_model, read_model_card, register_model
from mug.steps import pretrain
from tests.conftest import MICRO, commit_data, dvc_repo

SETTINGS = {"model": MICRO, "num_workers": 0, "shuffle_buffer": 32, "wandb": "disabled", "device": "cpu"}
SCORE = {"transfer/score": 0.5, "transfer/score_low": 0.45, "transfer/score_high": 0.55}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("dvc")
    repo = dvc_repo(root / "repo", root / "remote")
    synthesize_corpus(repo / "data", 128, 0, shard_size=64, image_size=32, progress=False)
    commit_data(repo, "data", "v1")
    return f"dvc://{repo}@v1#data/train"


def _register(data, folder, uri, **extra) -> int:
    """Train a micro model on `data` as a pipeline's pretrain step does, and register it with its lineage."""
    summary = pretrain([data], folder, SETTINGS | {"steps": 3, "batch_size": 16, "seed": 7} | extra.pop("train", {}))
    lineage = materialize([data]).lineage | {"code_version": summary["code_version"]} | extra
    return register_model(folder, SCORE, lineage, uri=uri).version


@pytest.mark.slow
def test_a_version_and_one_that_continued_it_reproduce_bit_for_bit(data, tmp_path, capsys):
    uri = f"sqlite:///{tmp_path / 'registry' / 'mlflow.db'}"
    assert _register(data, tmp_path / "first", uri) == 1
    init = download_model(1, tmp_path / "v1", uri=uri)
    assert _register(data, tmp_path / "second", uri, train={"init_from": str(init)}, init_from="mug-encoder v1") == 2
    assert f"mug registry reproduce 2 --uri {uri}" in read_model_card(2, uri=uri)
    capsys.readouterr()

    for version in (1, 2):
        out = tmp_path / f"again-{version}"
        assert main(["registry", "reproduce", str(version), "--uri", uri, "--out", str(out)]) == 0
        printed = capsys.readouterr().out
        assert f"data: matches: {data.split('@')[0]}@" in printed  # the address by commit
        assert "weights: matches: identical, bit for bit" in printed and "seed 7" in printed
        assert f"mug-encoder v{version}: reproduced bit for bit" in printed
    assert "continued from mug-encoder v1" in printed


def test_what_cannot_be_reproduced_is_named(tmp_path, capsys):
    uri = f"sqlite:///{tmp_path / 'registry' / 'mlflow.db'}"
    shards = tmp_path / "web"
    synthesize_corpus(shards, 64, 0, shard_size=64, image_size=32, progress=False)
    pretrain([str(shards / "train")], tmp_path / "model", SETTINGS | {"steps": 1, "batch_size": 16})
    register_model(tmp_path / "model", SCORE, {"data_md5": "0" * 32}, uri=uri)  # the shards changed since
    capsys.readouterr()
    assert main(["registry", "reproduce", "candidate", "--uri", uri, "--out", str(tmp_path / "again")]) == 2
    err = capsys.readouterr().err
    assert "not on data by DVC address, and those shards are different here" in err and len(err.splitlines()) == 1
