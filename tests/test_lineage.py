"""Lineage: one git helper behind the code version, the data revision and the pipelines' version names, each
saying when the working tree differs from the commit it names."""

import re
import subprocess
from pathlib import Path

import pytest

import mug
from mug.lineage import UNKNOWN, GitState, code_version, data_revision, git_state
from pipelines.publish import git_commit

REPO = Path(__file__).resolve().parents[1]


def _git(*args: str, cwd: Path) -> str:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True).stdout.strip()


@pytest.fixture
def repo(tmp_path) -> Path:
    """A repository with one committed shard."""
    _git("init", "-q", cwd=tmp_path)
    (tmp_path / "00000.tar").write_bytes(b"shard")
    _git("add", "00000.tar", cwd=tmp_path)
    _git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "data", cwd=tmp_path)
    return tmp_path


def test_a_revision_names_the_commit_and_says_when_the_tree_differs(repo):
    shards = [str(repo / "00000.tar")]
    commit = _git("rev-parse", "HEAD", cwd=repo)
    assert git_state(repo) == GitState(commit, dirty=False)
    assert data_revision(shards) == commit
    (repo / "00000.tar").write_bytes(b"changed")
    assert data_revision(shards) == commit + "+dirty"
    assert data_revision(shards, given="v2") == "v2"  # what the user named wins


def test_outside_a_repository_nothing_is_claimed(tmp_path):
    (tmp_path / "00000.tar").write_bytes(b"shard")
    assert git_state(tmp_path) is None
    assert data_revision([str(tmp_path / "00000.tar")]) == UNKNOWN


@pytest.mark.skipif(not (REPO / ".git").exists(), reason="needs the project's git checkout")
def test_the_code_version_and_the_pipeline_versions_name_the_same_commit_and_state():
    state = git_state(REPO)
    dirty = state.dirty
    assert code_version() == f"{mug.__version__}+g{state.commit[:7]}{'.dirty' if dirty else ''}"
    assert git_commit() == state.commit[:7] + ("-dirty" if dirty else "")
    assert re.fullmatch(r"\d+\.\d+\.\d+\+g[0-9a-f]{7}(\.dirty)?", code_version())  # a PEP 440 local version
