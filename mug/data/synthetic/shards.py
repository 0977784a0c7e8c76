"""Write one shard in img2dataset's format (docs/data-format.md): NNNNN.tar, NNNNN.parquet, NNNNN_stats.json.

Everything that would vary between runs is fixed (tar mtime, owner and mode; parquet schema; stats timings), so
the same samples always give byte-identical files, and each file appears under its name only once complete.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

MAX_SAMPLES_PER_SHARD = 10_000  # the key has 4 digits for the index within the shard
MAX_SHARDS = 100_000  # and 5 for the shard number
MEMBER_SUFFIXES = ("jpg", "json", "txt")  # sorted, as webdataset (so img2dataset) writes them

PARQUET_SCHEMA = pa.schema(
    [
        ("key", pa.string()),
        ("caption", pa.string()),
        ("url", pa.string()),
        ("status", pa.string()),
        ("error_message", pa.string()),
        ("width", pa.int64()),
        ("height", pa.int64()),
        ("original_width", pa.int64()),
        ("original_height", pa.int64()),
        ("sha256", pa.string()),
    ]
)


@dataclass(frozen=True)
class ShardSample:
    """One image-text pair as a shard stores it; `labels` only in our synthetic corpus."""

    jpeg: bytes
    caption: str
    url: str
    width: int
    height: int
    labels: dict | None = None


def sample_key(shard: int, index: int) -> str:
    """img2dataset's key: shard number (5 digits) then index within the shard (4 digits)."""
    return f"{shard:05d}{index:04d}"


def shard_paths(directory: Path, shard: int) -> tuple[Path, Path, Path]:
    """The tar, parquet and stats files of shard `shard`."""
    return directory / f"{shard:05d}.tar", directory / f"{shard:05d}.parquet", directory / f"{shard:05d}_stats.json"


def _member(name: str, data: bytes) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), 0, 0o644
    info.uid, info.gid, info.uname, info.gname = 0, 0, "", ""
    return info


def _metadata(key: str, sample: ShardSample, sha256: str) -> dict:
    meta = {
        "key": key,
        "caption": sample.caption,
        "url": sample.url,
        "status": "success",
        "error_message": None,
        "width": sample.width,
        "height": sample.height,
        "original_width": sample.width,
        "original_height": sample.height,
        "sha256": sha256,
    }
    if sample.labels is not None:
        meta["labels"] = sample.labels
    return meta


def _stats(count: int) -> dict:
    return {
        "count": count,
        "successes": count,
        "failed_to_download": 0,
        "failed_to_resize": 0,
        "duration": 0,
        "start_time": 0,
        "end_time": 0,
        "status_dict": {"success": count},
    }


def write_shard(directory: str | Path, shard: int, samples: Iterable[ShardSample]) -> int:
    """Stream `samples` into shard number `shard` under `directory`; returns how many it wrote.

    Each file is written under a temporary name and renamed when complete, so a crash never leaves a
    truncated tar (or a parquet or stats file) that looks like a finished shard.
    """
    paths = shard_paths(Path(directory), shard)
    temps = [path.with_name(f".{path.name}.{os.getpid()}.tmp") for path in paths]
    rows = []
    try:
        with tarfile.open(temps[0], "w", format=tarfile.PAX_FORMAT) as tar:
            for index, sample in enumerate(samples):
                if index >= MAX_SAMPLES_PER_SHARD:
                    raise ValueError(f"a shard holds at most {MAX_SAMPLES_PER_SHARD} samples")
                key = sample_key(shard, index)
                meta = _metadata(key, sample, hashlib.sha256(sample.jpeg).hexdigest())
                members = {"jpg": sample.jpeg, "txt": sample.caption.encode(), "json": json.dumps(meta).encode()}
                for suffix in MEMBER_SUFFIXES:
                    tar.addfile(_member(f"{key}.{suffix}", members[suffix]), io.BytesIO(members[suffix]))
                rows.append({name: meta[name] for name in PARQUET_SCHEMA.names})
        pq.write_table(pa.Table.from_pylist(rows, schema=PARQUET_SCHEMA), temps[1])
        temps[2].write_text(json.dumps(_stats(len(rows)), indent=4))
        for temp, path in zip(temps, paths, strict=True):
            os.replace(temp, path)
    finally:
        for temp in temps:
            temp.unlink(missing_ok=True)
    return len(rows)
