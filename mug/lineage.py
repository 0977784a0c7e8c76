"""Where a model came from: the code version and the data's content hash and revision that a registered model
records, so it can be traced back to the exact code and shards. KFP's cache key hashes parameter values, not data,
so these travel as values. The one place that asks git: `git_state`."""

from __future__ import annotations

import hashlib
import subprocess
from dataclasses import dataclass
from pathlib import Path

import yaml

import mug

UNKNOWN = "unknown"


@dataclass(frozen=True)
class GitState:
    commit: str  # the full hash of HEAD
    dirty: bool  # tracked files differ from it: the commit alone did not produce what runs


def git_state(where: Path) -> GitState | None:
    """HEAD of the git repository holding `where`, and whether its tracked files have changes; None outside a
    repository (an installed package, a container image) or without git."""

    def git(*args: str) -> str | None:
        try:
            run = subprocess.run(["git", *args], cwd=where, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return None
        return run.stdout.strip() if run.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if not commit:
        return None
    return GitState(commit, bool(git("status", "--porcelain", "--untracked-files=no")))


def code_version() -> str:
    """The package version, with the commit as PEP 440's local part in a git checkout (`.dirty` when tracked
    files have changes): what a model's lineage records, e.g. 0.1.0+g1a2b3c4.dirty."""
    state = git_state(Path(mug.__file__).parent)
    if state is None:
        return mug.__version__
    return f"{mug.__version__}+g{state.commit[:7]}{'.dirty' if state.dirty else ''}"


def _local(shards: list[str]) -> list[Path] | None:
    """The shards as paths, or None when any of them is streamed (pipe:, http)."""
    paths = [Path(s.removeprefix("file://")) for s in shards]
    return paths if all(p.is_file() for p in paths) else None


def _dvc_md5(paths: list[Path]) -> str | None:
    """The md5 DVC recorded for the tracked folder that holds every shard (`data.dvc` beside `data/`), if any."""
    for folder in paths[0].resolve().parents[:-1]:  # not the root, which has no name
        dvc_file = folder.with_name(folder.name + ".dvc")
        if not dvc_file.is_file() or not all(p.resolve().is_relative_to(folder) for p in paths):
            continue
        outs = (yaml.safe_load(dvc_file.read_text()) or {}).get("outs") or []
        for out in outs:
            if (dvc_file.parent / out.get("path", "")).resolve() == folder and "md5" in out:
                return str(out["md5"])
    return None


def data_md5(shards: list[str]) -> str:
    """DVC's md5 of the tracked folder holding the shards; else an md5 over the local shards' names and contents
    (in the given order); `unknown` for streamed shards, whose revision is then the only record."""
    paths = _local(shards)
    if not paths:
        return UNKNOWN
    tracked = _dvc_md5(paths)
    if tracked is not None:
        return tracked
    digest = hashlib.md5()
    for path in paths:
        with path.open("rb") as f:
            digest.update(f"{path.name} {hashlib.file_digest(f, 'md5').hexdigest()}\n".encode())
    return digest.hexdigest()


def data_revision(shards: list[str], given: str = "") -> str:
    """The revision the user named (a DVC/git revision), else the git commit of the repository holding the local
    shards (`+dirty` when its working tree has changes), else `unknown`."""
    if given:
        return given
    paths = _local(shards)
    if not paths:
        return UNKNOWN
    state = git_state(paths[0].resolve().parent)
    if state is None:
        return UNKNOWN
    return state.commit + ("+dirty" if state.dirty else "")
