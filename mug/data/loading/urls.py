"""Where shards live: local paths, folders of `.tar` files, brace patterns, `pipe:` commands and http(s) URLs."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import BinaryIO
from urllib.parse import urlparse

import webdataset as wds
from webdataset.gopen import Pipe
from webdataset.shardlists import expand_urls

from mug.data.loading.tar import TarError
from mug.errors import UserError

Urls = str | os.PathLike | Sequence[str | os.PathLike]

# webdataset runs `pipe:` commands, and curl for http(s), and reports a failure as the repr of the command's
# arguments and its exit status: say what that status means instead.
_PIPE_EXIT = re.compile(r": exit (\d+) \((?:read|write)\)")
_CURL_MEANS = {
    6: "cannot resolve the host",
    7: "cannot connect to the server",
    22: "the server answered with an HTTP error (404 Not Found or another status >= 400)",
    28: "timed out",
    35: "TLS handshake failed",
    56: "the connection broke while receiving",
}


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


def shard_name(url: str | os.PathLike) -> str:
    """How a report names a shard: a local one by its file name, a remote one by its whole URL."""
    return str(url) if urlparse(str(url)).scheme not in ("", "file") else Path(url).name


class ShardError(Exception):
    """A shard that could not be read to its end, and why, in one line."""


@contextmanager
def reading_shard(url: str | os.PathLike) -> Iterator[BinaryIO]:
    """`open_shard(url)` for a `with` block that reads it: a failure to open or read (OSError, TarError) leaves
    the block as a ShardError saying why, and the stream is closed either way.

    A `pipe:` command (or curl) that fails before writing gives the reader an empty stream, and whether webdataset
    has noticed the exit status by then is a race: closing the stream waits for the status, which then says why.
    """
    try:
        stream = open_shard(url)
    except OSError as err:
        raise ShardError(_shard_error(err)) from err
    try:
        yield stream
    except (OSError, TarError) as err:
        raise ShardError(_shard_error(_exit_status(stream) or err)) from err
    finally:
        with suppress(OSError):  # a command that fails after writing a whole tar has still delivered it
            stream.close()


def _exit_status(stream: BinaryIO) -> OSError | None:
    if isinstance(stream, Pipe):
        try:
            stream.close()
        except OSError as status:
            return status
    return None


def _shard_error(err: Exception) -> str:
    """Why a shard could not be read, in one line without the stream objects webdataset appends to `err.args`."""
    message = err.args[0] if len(err.args) > 1 and isinstance(err.args[0], str) else str(err)
    status = _PIPE_EXIT.search(message)
    if status and "['curl'," in message:
        code = int(status.group(1))
        message = f"{_CURL_MEANS.get(code, 'curl failed')} (curl exit {code})"
    elif status:
        message = f"the command exited with status {status.group(1)}"
    return f"{type(err).__name__}: {message}"
