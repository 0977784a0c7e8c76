"""Data addressed the DVC way, `dvc://REPO@REV#PATH`: a git repository (URL or local path), a revision (tag, branch
or commit) and a path DVC tracks in it. DVC's own API (`DVCFileSystem`) resolves the address to the commit and the
files of that revision and fetches them from the revision's remote (a folder, S3, GCS) into a cache keyed by their
md5, so a task reads plain local shards and the lineage records what DVC recorded, not the string the user typed.

REV is required: an address says which data it means. `@` splits at the last one, so `git@host:org/repo.git@v2`
works; `#` precedes the path inside the repository.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mug.cache import cache_dir
from mug.errors import UserError

SCHEME = "dvc://"
LINEAGE = ("data_md5", "data_revision", "data_ref", "data_source")


@dataclass(frozen=True)
class Address:
    repo: str  # a git URL, or an absolute local path
    rev: str
    path: str

    def __str__(self) -> str:
        return f"{SCHEME}{self.repo}@{self.rev}#{self.path}"


@dataclass(frozen=True)
class Resolved:
    address: Address  # as given
    commit: str  # the full commit the revision names
    md5: str  # the .dir md5 DVC records for the path (for a folder inside a tracked one: the md5 it would record)
    files: dict[str, str]  # path under address.path -> md5
    folder: bool
    fs: Any = field(repr=False, compare=False)  # the DVCFileSystem of the commit, which `fetch` reads from

    @property
    def pinned(self) -> Address:
        """The same data by commit, which no later push to a branch or moved tag can change."""
        return Address(self.address.repo, self.commit, self.address.path)

    def lineage(self) -> dict[str, str]:
        return {
            "data_md5": self.md5,
            "data_revision": self.commit,
            "data_ref": self.address.rev,
            "data_source": str(self.pinned),
        }


def is_address(text: str) -> bool:
    return str(text).startswith(SCHEME)


def parse(text: str) -> Address:
    """`dvc://REPO@REV#PATH` -> Address; a local REPO becomes absolute, so the address means the same anywhere."""
    rest, hash_sign, path = str(text).removeprefix(SCHEME).rpartition("#")
    repo, at, rev = rest.rpartition("@")
    if not (hash_sign and at and repo and rev and path.strip("/")):
        raise UserError(f"{text!r} is not a DVC address: write dvc://REPO@REV#PATH, e.g. dvc://.@v2#data/train")
    if "://" not in repo and Path(repo).expanduser().exists():
        repo = str(Path(repo).expanduser().resolve())
    return Address(repo, rev, path.strip("/"))


def _filesystem(address: Address):
    from dvc.api import DVCFileSystem
    from dvc.scm import CloneError, RevError

    try:
        fs = DVCFileSystem(address.repo, rev=address.rev)
        return fs, fs.repo.get_rev()
    except RevError as err:
        raise UserError(f"{address}: the repository {address.repo} has no revision {address.rev!r}") from err
    except CloneError as err:
        raise UserError(f"{address}: cannot open the git repository {address.repo} ({err})") from err


def _tree_md5(files: dict[str, str]) -> str:
    """The md5 DVC gives a folder of `files`: that of its .dir listing (equal to the md5 in the .dvc file when the
    folder is the tracked one), computed from the listing, so nothing is downloaded."""
    from dvc_data.hashfile.hash_info import HashInfo
    from dvc_data.hashfile.tree import Tree

    tree = Tree()
    for name, md5 in files.items():
        tree.add(tuple(name.split("/")), None, HashInfo("md5", md5))
    tree.digest()
    return tree.hash_info.value


def _unreachable(address: Address, err: Exception) -> UserError:
    cause = err.__cause__ or err
    return UserError(
        f"{address}: the DVC remote of revision {address.rev} is unreachable or does not hold the data ({cause})"
    )


def resolve(address: Address) -> Resolved:
    """The commit and the DVC-tracked files `address` names, without fetching them. Errors name the bad part."""
    from dvc_data.index.index import DataIndexDirError

    fs, commit = _filesystem(address)
    try:
        info = fs.info(address.path)
        if "dvc_info" not in info:
            raise UserError(f"{address}: {address.path} is in git but not tracked by DVC at revision {address.rev}")
        if info["type"] == "file":
            return Resolved(address, commit, info["md5"], {Path(address.path).name: info["md5"]}, False, fs)
        found = fs.find(address.path, detail=True)
    except FileNotFoundError as err:
        raise UserError(f"{address}: no {address.path} at revision {address.rev} of {address.repo}") from err
    except DataIndexDirError as err:  # the folder's listing (its .dir) is not in the cache and not in the remote
        raise _unreachable(address, err) from err
    prefix = address.path + "/"
    files = {name.removeprefix(prefix): entry["md5"] for name, entry in found.items() if "md5" in entry}
    if not files:
        raise UserError(f"{address}: {address.path} holds no DVC-tracked files at revision {address.rev}")
    return Resolved(address, commit, _tree_md5(files), files, True, fs)


def fetch(resolved: Resolved, cache: Path | None = None) -> Path:
    """The resolved files as a local folder `cache`/MD5 (default: $MUG_CACHE_DIR/dvc, shared by the runs of one
    machine), fetched once: written to a temporary folder and renamed into place, so a reader never sees a partial
    one."""
    cache = cache or cache_dir("dvc")
    folder = cache / resolved.md5.removesuffix(".dir")
    if folder.is_dir():
        return folder
    address, fs = resolved.pinned, resolved.fs
    cache.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".fetch-", dir=cache))
    files = tmp / "files"
    try:
        if resolved.folder:
            fs.get(address.path, str(files), recursive=True)
        else:
            files.mkdir()
            fs.get_file(address.path, str(files / Path(address.path).name))
        try:
            files.rename(folder)
        except OSError:  # another process fetched the same data meanwhile
            if not folder.is_dir():
                raise
    except FileNotFoundError as err:
        raise _unreachable(resolved.address, err) from err
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


@dataclass(frozen=True)
class Data:
    shards: list[str]  # what this process reads: local folders for DVC addresses
    sources: list[str]  # what a later task (another pod) passes to read the same data: addresses by commit
    lineage: dict[str, str] | None  # `LINEAGE`, for DVC addresses

    def describe(self) -> str:
        """One line saying what the DVC addresses resolved to ("" for plain data)."""
        if self.lineage is None:
            return ""
        lineage = self.lineage
        return f"data: {lineage['data_source']} (from {lineage['data_ref']}), md5 {lineage['data_md5']}"


def materialize(data: list[str], cache: Path | None = None) -> Data:
    """Resolve and fetch the DVC addresses in `data`; several addresses join their lineage values with ", ".
    Plain paths and URLs pass unchanged, with no lineage. One list cannot mix the two: its lineage would name
    only part of the data."""
    data = [str(item) for item in data]
    if not any(is_address(item) for item in data):
        return Data(data, data, None)
    if not all(is_address(item) for item in data):
        raise UserError(
            f"data mixes DVC addresses and other shards ({', '.join(data)}): track all of it with DVC, "
            "or pass plain paths only"
        )
    resolved = [resolve(parse(item)) for item in data]
    lineage = {key: ", ".join(r.lineage()[key] for r in resolved) for key in LINEAGE}
    return Data([str(fetch(r, cache)) for r in resolved], [str(r.pinned) for r in resolved], lineage)
