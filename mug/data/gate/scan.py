"""Scan img2dataset shards into a table with one row per sample: what the validation gate checks.

Tars are read as streams (`mug.data.loading.tar`, strict: a cut or garbled shard is an error, not a short
one), the way they arrive from object storage, and every image is really decoded, by the loader's own decoder
(`mug.data.loading.decode`): that catches a truncated JPEG, and the gate's decode failures are exactly the
samples training would skip. Shards are scanned in parallel, one task per shard.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import re
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mug.data.loading.decode import BadImage, decode
from mug.data.loading.tar import tar_samples
from mug.data.loading.urls import ShardError, Urls, expand_shards, reading_shard

if TYPE_CHECKING:
    import pandas as pd

IMAGE_EXTS = ("jpg", "jpeg", "png", "webp")
# A caption that is really a file name or a URL: what scraped alt-texts degrade to.
FILENAME_CAPTION = re.compile(
    r"^\S+\.(jpe?g|png|gif|webp|bmp|tiff?)$|\bIMG[_-]?\d+|\bDSC[_N]?\d+|https?://|^www\.\S+$", re.IGNORECASE
)
# Columns a worker fills per sample; the rest (duplicate, min side, tokens...) are derived over the whole table.
_SAMPLE_COLUMNS = (
    "key",
    "caption",
    "caption_chars",
    "empty_caption",
    "filename_caption",
    "decodes",
    "decode_error",
    "width",
    "height",
    "sha256",
    "status",
)


@dataclass
class ShardScan:
    """One shard's samples (columnar) and, when the tar could not be read to its end, why."""

    path: str
    columns: dict[str, list] = field(default_factory=lambda: {name: [] for name in _SAMPLE_COLUMNS})
    error: str | None = None
    seconds: float = 0.0

    @property
    def samples(self) -> int:
        return len(self.columns["key"])


@dataclass
class Scan:
    table: pd.DataFrame
    shards: list[ShardScan]
    seconds: float
    workers: int

    @property
    def unreadable(self) -> list[ShardScan]:
        return [shard for shard in self.shards if shard.error is not None]


def _add_sample(columns: dict[str, list], key: str, files: dict[str, bytes]) -> None:
    caption = files["txt"].decode("utf-8", errors="replace") if "txt" in files else ""
    image = next((files[ext] for ext in IMAGE_EXTS if ext in files), None)
    width = height = error = None
    if image is None:
        error = "no image in the sample"
    else:
        try:
            height, width = decode(image).shape[:2]
        except BadImage as err:
            error = str(err)
    try:
        meta = json.loads(files["json"]) if "json" in files else None
    except ValueError:
        meta = None
    status = meta.get("status") if isinstance(meta, dict) else None
    values = (
        key,
        caption,
        len(caption),
        not caption.strip(),
        bool(FILENAME_CAPTION.search(caption.strip())),
        error is None,
        error,
        width,
        height,
        hashlib.sha256(image).hexdigest() if image is not None else None,
        status if isinstance(status, str) else None,
    )
    for name, value in zip(_SAMPLE_COLUMNS, values, strict=True):
        columns[name].append(value)


def scan_shard(path: str) -> ShardScan:
    """Every sample of one shard. A file that is not a tar, or ends early, keeps the samples read before the
    damage and records the error: one bad shard is a finding, not a crash."""
    start = time.perf_counter()
    scan = ShardScan(str(path))
    try:
        with reading_shard(path) as stream:
            for key, files in tar_samples(stream):
                _add_sample(scan.columns, key, files)
    except ShardError as err:  # the samples before the damage are whole and kept
        scan.error = str(err)
    scan.seconds = time.perf_counter() - start
    return scan


def _cpu_count() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _scan_all(paths: list[str], workers: int) -> list[ShardScan]:
    if workers <= 1:
        return [scan_shard(path) for path in paths]
    # Not fork: the caller may run threads (tokenizers, GX) that a forked child would copy mid-lock.
    method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
    with multiprocessing.get_context(method).Pool(workers) as pool:
        return pool.map(scan_shard, paths, chunksize=1)


def _count_tokens(captions: list[str], tokenizer: Any) -> list[int]:
    """Word pieces per caption, without the BOS/EOS the text model adds."""
    hf = getattr(tokenizer, "tokenizer", tokenizer)  # a CaptionTokenizer or a bare HF `tokenizers.Tokenizer`
    return [len(enc.ids) for enc in hf.encode_batch(captions, add_special_tokens=False)]


def scan_shards(urls: Urls, tokenizer: Any = None, workers: int | None = None) -> Scan:
    """The sample table of all shards, in shard order, with derived columns: min side, aspect ratio, duplicate
    (the image's sha256 was seen earlier in the scan) and, with a tokenizer, caption length in tokens."""
    import numpy as np
    import pandas as pd

    paths = expand_shards(urls)
    workers = max(1, min(len(paths), workers or _cpu_count()))
    start = time.perf_counter()
    shards = _scan_all(paths, workers)
    columns = {name: [v for shard in shards for v in shard.columns[name]] for name in _SAMPLE_COLUMNS}
    table = pd.DataFrame(
        {
            "key": pd.Series(columns["key"], dtype="str"),
            "shard": pd.Series([shard.path for shard in shards for _ in range(shard.samples)], dtype="str"),
            "caption": pd.Series(columns["caption"], dtype="str"),
            "caption_chars": pd.Series(columns["caption_chars"], dtype="int64"),
            "empty_caption": pd.Series(columns["empty_caption"], dtype="bool"),
            "filename_caption": pd.Series(columns["filename_caption"], dtype="bool"),
            "decodes": pd.Series(columns["decodes"], dtype="bool"),
            "decode_error": pd.Series(columns["decode_error"], dtype="object"),
            "width": pd.Series(columns["width"], dtype="Int64"),
            "height": pd.Series(columns["height"], dtype="Int64"),
            "sha256": pd.Series(columns["sha256"], dtype="object"),
            "status": pd.Series(columns["status"], dtype="object"),
        }
    )
    table["min_side"] = np.minimum(table["width"], table["height"])
    table["aspect_ratio"] = (table["width"] / table["height"]).astype("float64")
    table["duplicate"] = table["sha256"].notna() & table["sha256"].duplicated()
    if tokenizer is not None:
        table["caption_tokens"] = pd.Series(_count_tokens(columns["caption"], tokenizer), dtype="int64")
    return Scan(table, shards, time.perf_counter() - start, workers)
