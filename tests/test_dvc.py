"""DVC for real: a round trip through a temporary remote, and the project's own data.dvc, remote and stages."""

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.slow  # make test-fast skips this module


def run(*args, cwd):
    # The stages call `mug`: put this interpreter's scripts first on PATH, as an activated venv would.
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    env = dict(
        os.environ,
        PATH=path,
        DVC_NO_ANALYTICS="1",
        GIT_AUTHOR_NAME="t",
        GIT_AUTHOR_EMAIL="t@t",
        GIT_COMMITTER_NAME="t",
        GIT_COMMITTER_EMAIL="t@t",
    )
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, f"{args}: {proc.stdout}\n{proc.stderr}"
    return proc.stdout


def dvc(*args, cwd):
    return run(sys.executable, "-m", "dvc", *args, cwd=cwd)


def digest(folder):
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture()
def repo(tmp_path):
    root = tmp_path / "repo"
    root.mkdir()
    run("git", "init", "-q", cwd=root)
    dvc("init", "-q", cwd=root)
    dvc("remote", "add", "-d", "local", str(tmp_path / "remote"), cwd=root)
    return root


def test_add_push_delete_pull_gives_identical_bytes(repo):
    data = repo / "data"
    (data / "train").mkdir(parents=True)
    for i in range(3):
        (data / "train" / f"{i:05d}.tar").write_bytes(os.urandom(4096 + i))
    (data / "train" / "00000_stats.json").write_text('{"count": 3}')
    before = digest(data)
    dvc("add", "-q", "data", cwd=repo)
    assert (repo / "data.dvc").is_file()
    run("git", "add", "data.dvc", ".gitignore", ".dvc/config", cwd=repo)
    run("git", "commit", "-qm", "track data", cwd=repo)
    dvc("push", "-q", cwd=repo)
    for path in (data, repo / ".dvc" / "cache"):
        subprocess.run(["rm", "-rf", str(path)], check=True)
    dvc("pull", "-q", cwd=repo)
    assert digest(data) == before
    assert "up to date" in dvc("status", cwd=repo).lower()


REPO = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(not (REPO / ".git").exists(), reason="needs the project's git checkout")
def test_a_fresh_clone_pulls_the_sample_corpus_offline_and_it_passes_the_gate(tmp_path):
    from mug.data.gate.validate import validate_shards

    clone = tmp_path / "clone"
    run("git", "clone", "-q", str(REPO), str(clone), cwd=tmp_path)
    assert not (clone / "data").exists()
    dvc("pull", "-q", cwd=clone)  # from the remote folder committed in the repo: no network
    assert "up to date" in dvc("status", cwd=clone).lower()
    assert len(list((clone / "data" / "train").glob("*.tar"))) >= 3
    assert validate_shards(clone / "data" / "train", workers=1).passed


def test_the_synthesize_stage_reproduces_the_tracked_sample():
    lock = yaml.safe_load((REPO / "dvc.lock").read_text())["stages"]
    assert set(lock) == {"synthesize", "validate", "tokenizer"}
    (corpus,) = lock["synthesize"]["outs"]
    (data,) = yaml.safe_load((REPO / "data.dvc").read_text())["outs"]
    # The same md5 means the same bytes: the cache and the remote hold one copy, and data/ is the output of
    # `mug data synth` with the parameters in params.yaml.
    assert corpus["path"] == "corpus" and corpus["md5"] == data["md5"]


@pytest.mark.skipif(not (REPO / ".git").exists(), reason="needs the project's git checkout")
def test_a_fresh_clone_is_up_to_date_and_resynthesizing_changes_nothing(tmp_path):
    clone = tmp_path / "clone"
    run("git", "clone", "-q", str(REPO), str(clone), cwd=tmp_path)
    dvc("pull", "-q", cwd=clone)
    assert digest(clone / "corpus") == digest(clone / "data")
    assert "up to date" in dvc("status", cwd=clone).lower()
    out = dvc("repro", "--force", "synthesize", cwd=clone)
    assert "Running stage 'synthesize'" in out
    assert "up to date" in dvc("status", cwd=clone).lower()  # validate and tokenizer see unchanged shards
    assert digest(clone / "corpus") == digest(clone / "data")


@pytest.mark.skipif(not (REPO / ".git").exists(), reason="needs the project's git checkout")
def test_the_data_stages_reproduce_and_rerun_only_what_a_parameter_changes(tmp_path):
    clone = tmp_path / "clone"
    run("git", "clone", "-q", str(REPO), str(clone), cwd=tmp_path)
    dvc("pull", "-q", cwd=clone)
    assert (clone / "artifacts" / "tokenizer.json").is_file()  # stage outputs come from the remote too
    assert "up to date" in dvc("status", cwd=clone).lower()
    params = clone / "params.yaml"
    params.write_text(params.read_text().replace("vocab_size: 8192", "vocab_size: 300"))
    assert "tokenizer" in dvc("status", cwd=clone) and "validate" not in dvc("status", cwd=clone)
    out = dvc("repro", cwd=clone)
    assert "Running stage 'tokenizer'" in out and "Running stage 'validate'" not in out
    assert "up to date" in dvc("status", cwd=clone).lower()
    assert len(json.loads((clone / "artifacts" / "tokenizer.json").read_text())["model"]["vocab"]) <= 300
