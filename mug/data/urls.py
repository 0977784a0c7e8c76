"""Where shards live: local paths, folders of `.tar` files, brace patterns, `pipe:` commands and http(s) URLs."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO
from urllib.parse import urlparse

import webdataset as wds
from webdataset.shardlists import expand_urls

from mug.errors import UserError

Urls = str | os.PathLike | Sequence[str | os.PathLike]


def expand_shards(urls: Urls) -> list[str]:
    """Every shard URL in `urls`: braces expanded, folders listed (their `*.tar`, sorted); local shards must exist."""
    patterns = [str(urls)] if isinstance(urls, str | os.PathLike) else [str(p) for p in urls]
    if not patterns:
        raise UserError("no shard URLs given")
    shards: list[str] = []
    for pattern in patterns:
        expanded = expand_urls(pattern)
        missing: list[str] = []
        for url in expanded:
            scheme = urlparse(url).scheme
            if scheme not in ("", "file"):
                if scheme not in wds.gopen_schemes:
                    raise UserError(f"cannot read {url}: stream it through a command, e.g. 'pipe:aws s3 cp {url} -'")
                shards.append(url)
                continue
            path = Path(urlparse(url).path if scheme == "file" else url)
            if path.is_dir():
                tars = sorted(str(p) for p in path.glob("*.tar"))
                if not tars:
                    raise UserError(f"shard folder {path} holds no .tar files")
                shards.extend(tars)
            elif path.is_file():
                shards.append(str(path))
            else:
                missing.append(str(path))
        if missing:
            where = "" if missing == [pattern] else f" ({len(missing)} of the {len(expanded)} in {pattern})"
            raise UserError(f"shard {missing[0]} does not exist{where}")
    return shards


def open_shard(url: str | os.PathLike) -> BinaryIO:
    """A byte stream of one shard, local or remote (`pipe:` commands and http(s) through webdataset's gopen)."""
    url = str(url)
    scheme = urlparse(url).scheme
    if scheme in ("", "file"):
        return open(urlparse(url).path if scheme == "file" else url, "rb")
    return wds.gopen(url, "rb")
