"""Where a model's data came from: the content hash and the revision a registered model records, so it can be
traced back to the exact shards. KFP's cache key hashes parameter values, not data, so these travel as values."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import yaml

UNKNOWN = "unknown"


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
    where = paths[0].resolve().parent

    def git(*args: str) -> str:
        try:
            run = subprocess.run(["git", *args], cwd=where, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return ""
        return run.stdout.strip() if run.returncode == 0 else ""

    commit = git("rev-parse", "HEAD")
    if not commit:
        return UNKNOWN
    return commit + ("+dirty" if git("status", "--porcelain", "--untracked-files=no") else "")
