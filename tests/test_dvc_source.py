"""Data by DVC address: two tagged revisions of a sample resolve to their own shards and md5s through DVC's API,
from the revision's remote (the repository keeps no copy), and each bad part of an address is named."""

import json
from pathlib import Path

import pytest
import yaml

from mug.cli import main
from mug.data.dvc_source import materialize, parse, resolve
from mug.data.synthetic.corpus import synthesize_corpus
from mug.errors import UserError
from tests.conftest import MICRO, add_shards, commit_data, dvc_repo, git

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    """v1: two train shards and an eval shard; v2: two more train shards. Returns the repository and the bytes of
    each revision's train shards."""
    root = tmp_path_factory.mktemp("dvc")
    repo = dvc_repo(root / "repo", root / "remote")
    synthesize_corpus(repo / "data", 256, 64, shard_size=128, image_size=32, progress=False)
    shards = {"v1": _tars(repo / "data" / "train")}
    commit_data(repo, "data", "v1")
    add_shards(repo / "data" / "train", seed=1, samples=256)
    shards["v2"] = _tars(repo / "data" / "train")
    commit_data(repo, "data", "v2")
    return repo, shards


def _tars(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*.tar"))}


def test_each_revision_resolves_to_its_own_shards_and_md5(sample, tmp_path):
    repo, shards = sample
    seen = {}
    for tag in ("v1", "v2"):
        data = materialize([f"dvc://{repo}@{tag}#data/train"], tmp_path / "cache")
        (folder,) = data.shards
        assert _tars(Path(folder)) == shards[tag]
        commit = git("rev-parse", tag, cwd=repo)
        assert data.lineage["data_revision"] == commit and data.lineage["data_ref"] == tag
        assert data.sources == [f"dvc://{repo}@{commit}#data/train"] == [data.lineage["data_source"]]
        seen[tag] = data.lineage["data_md5"]
        # The tracked folder's md5 is the one its .dvc file records at that revision.
        (recorded,) = yaml.safe_load(git("show", f"{tag}:data.dvc", cwd=repo))["outs"]
        assert resolve(parse(f"dvc://{repo}@{tag}#data")).md5 == recorded["md5"]
    assert len(shards["v1"]) == 2 and len(shards["v2"]) == 4
    assert seen["v1"] != seen["v2"] and all(md5.endswith(".dir") for md5 in seen.values())
    # The same data by commit is the same md5 (and a fetched revision is read from the cache).
    again = materialize([f"dvc://{repo}@{git('rev-parse', 'v1', cwd=repo)}#data/train"], tmp_path / "cache")
    assert again.lineage["data_md5"] == seen["v1"]


def test_plain_shards_pass_unchanged_and_cannot_be_mixed_with_addresses(sample):
    repo, _ = sample
    data = materialize(["data/train", "pipe:cat x.tar"])
    assert data.shards == data.sources == ["data/train", "pipe:cat x.tar"] and data.lineage is None
    with pytest.raises(UserError, match="mixes DVC addresses and other shards"):
        materialize([f"dvc://{repo}@v1#data/train", "data/train"])


def test_a_local_repository_becomes_absolute_and_a_url_keeps_its_user(sample, monkeypatch):
    repo, _ = sample
    monkeypatch.chdir(repo.parent)
    assert parse("dvc://repo@v1#data/train/").repo == str(repo)
    address = parse("dvc://git@github.com:org/data.git@v2#data/train")
    assert (address.repo, address.rev, address.path) == ("git@github.com:org/data.git", "v2", "data/train")


@pytest.mark.parametrize(
    "address, message",
    [
        ("dvc://{repo}#data/train", "not a DVC address: write dvc://REPO@REV#PATH"),
        ("dvc://{repo}@v1", "not a DVC address"),
        ("dvc://{repo}@v9#data/train", "has no revision 'v9'"),
        ("dvc://{repo}@v1#data/test", "no data/test at revision v1"),
        ("dvc://{repo}@v1#data.dvc", "data.dvc is in git but not tracked by DVC"),
        ("dvc://{repo}-gone@v1#data/train", "cannot open the git repository"),
    ],
)
def test_a_bad_address_is_one_line_naming_what_is_wrong(sample, address, message):
    repo, _ = sample
    with pytest.raises(UserError, match=message) as err:
        materialize([address.format(repo=repo)])
    assert "\n" not in str(err.value)


def test_an_unreachable_remote_is_named(sample, tmp_path):
    repo, _ = sample
    clone = tmp_path / "clone"
    git("clone", "-q", str(repo), str(clone), cwd=tmp_path)
    config = clone / ".dvc" / "config"
    config.write_text(config.read_text().replace(str(repo.parent / "remote"), str(tmp_path / "gone")))
    git("commit", "-qam", "the remote moved", cwd=clone)
    with pytest.raises(UserError, match="remote of revision .* is unreachable or does not hold the data"):
        materialize([f"dvc://{clone}@HEAD#data/train"], tmp_path / "cache")
    assert not list(tmp_path.glob("cache/*"))  # nothing half-fetched


@pytest.mark.slow
def test_the_data_gate_records_what_dvc_resolved_not_what_was_given(sample, tmp_path):
    from mug.steps import SHARDS, validate

    repo, _ = sample
    address = f"dvc://{repo}@v2#data/train"
    result = validate([address], tmp_path / "dataset", tmp_path / "report.html", "ignored", min_side=32)
    commit = git("rev-parse", "v2", cwd=repo)
    assert result["lineage"]["data_revision"] == commit and result["lineage"]["data_ref"] == "v2"
    assert result["shards"] == [f"dvc://{repo}@{commit}#data/train"]  # what the training task fetches again
    assert result["metrics"]["samples"] == 512
    assert json.loads((tmp_path / "dataset" / SHARDS).read_text())["data_md5"] == result["lineage"]["data_md5"]


def test_the_commands_take_dvc_addresses(sample, tmp_path, capsys):
    repo, _ = sample
    address = f"dvc://{repo}@v1#data/train"
    assert main(["data", "validate", address, "--workers", "1", "--min-side", "32"]) == 0
    out = capsys.readouterr().out
    commit = git("rev-parse", "v1", cwd=repo)
    assert f"data: dvc://{repo}@{commit}#data/train (from v1), md5 " in out and "data gate passed" in out

    settings = {"model": MICRO, "batch_size": 8, "num_workers": 0, "shuffle_buffer": 16, "wandb": "disabled"}
    argv = [arg for key, value in settings.items() for arg in ("--set", f"{key}={json.dumps(value)}")]
    assert main(["pretrain", "--data", address, "--steps", "2", "--out", str(tmp_path / "run"), *argv]) == 0
    lineage = json.loads((tmp_path / "run" / "data.json").read_text())
    assert lineage["data_revision"] == commit and lineage["data_ref"] == "v1"
    assert lineage["data_md5"] in capsys.readouterr().out


@pytest.mark.slow
@pytest.mark.skipif(not (REPO / ".git").exists(), reason="needs the project's git checkout")
def test_this_repository_resolves_its_sample_from_the_committed_remote(tmp_path):
    clone = tmp_path / "clone"  # a fresh clone has no DVC cache: the data comes from its dvc-remote/ folder
    git("clone", "-q", str(REPO), str(clone), cwd=tmp_path)
    (recorded,) = yaml.safe_load((clone / "data.dvc").read_text())["outs"]
    assert resolve(parse(f"dvc://{clone}@HEAD#data")).md5 == recorded["md5"]
    data = materialize([f"dvc://{clone}@HEAD#data/eval"], tmp_path / "cache")
    assert sorted(p.name for p in Path(data.shards[0]).glob("*.tar")) == [f"{i:05d}.tar" for i in range(5)]
    assert data.lineage["data_revision"] == git("rev-parse", "HEAD", cwd=REPO)
