"""Shards -> samples: the shard order (shuffled per epoch, sliced by rank), the tar reader that counts a failing
shard by how far it got, and the weighted mixture of several sources."""

from __future__ import annotations

import logging
import os
import random
from collections.abc import Iterator, Sequence
from itertools import islice

import webdataset as wds

from mug.config import ConfigError
from mug.data.loading.skips import Skips
from mug.data.loading.tar import tar_samples
from mug.data.loading.urls import ShardError, Urls, expand_shards, reading_shard
from mug.errors import UserError

log = logging.getLogger("mug.data")

IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp")
# In resampled mode a source whose shards all fail would be retried forever: stop after this many in a row.
MAX_FAILED_SHARDS_IN_A_ROW = 200


def sources_of(urls: Urls | Sequence[tuple[Urls, float]]) -> list[tuple[list[str], float]]:
    items = [urls] if isinstance(urls, str | os.PathLike) else list(urls)
    if all(isinstance(item, str | os.PathLike) for item in items):
        return [(expand_shards(items), 1.0)]
    # Pairs may come as lists: that is what a YAML or JSON config (a pipeline parameter) holds.
    if not all(isinstance(item, tuple | list) and len(item) == 2 and _positive(item[1]) for item in items):
        raise ConfigError("loader.urls must be shard URLs or a list of (urls, weight) pairs with positive weights")
    return [(expand_shards(source), float(weight)) for source, weight in items]


def _positive(weight: object) -> bool:
    return isinstance(weight, int | float) and not isinstance(weight, bool) and weight > 0


class ShardReader:
    """Shard URLs -> samples through `mug.data.loading.tar`; a shard that fails is counted once, by how far it got."""

    def __init__(self, skips: Skips, extensions: tuple[str, ...], give_up_after: int | None):
        self.skips, self.give_up_after = skips, give_up_after
        self.suffixes = tuple(f".{ext}" for ext in extensions)
        self.members = 0
        self.failed_in_a_row = 0

    def __call__(self, shards: Iterator[dict]) -> Iterator[dict]:
        for shard in shards:
            url, self.members = shard["url"], 0
            try:
                with reading_shard(url) as stream:
                    for key, files in tar_samples(stream, self._member, self._duplicate):
                        yield {"__key__": key, **files}
                failed = False
            except ShardError as err:
                failed = True
                reason = "truncated_shard" if self.members else "unreadable_shard"
                self.skips.count(reason)
                log.warning("%s %s: %s", reason, url, str(err)[:300])
            if not self.members and not failed:
                self.skips.count("empty_shard")
            self.failed_in_a_row = self.failed_in_a_row + 1 if failed or not self.members else 0
            if self.give_up_after and self.failed_in_a_row >= self.give_up_after:
                raise UserError(
                    f"the last {self.failed_in_a_row} shards drawn were unreadable or empty (the last: {url})"
                )

    def _member(self, name: str) -> bool:
        self.members += 1  # a member's header read: from here on a failure is a truncation
        return name.lower().endswith(self.suffixes)  # members nobody reads are not kept

    def _duplicate(self, name: str) -> None:
        self.skips.count("duplicate_file")


def shard_order(urls: list[str], rng: random.Random | None) -> Iterator[dict]:
    order = list(urls)
    if rng is not None:
        rng.shuffle(order)
    return iter([{"url": url} for url in order])


def every(src: Iterator, start: int, step: int) -> Iterator:
    return islice(src, start, None, step)


def mix(sources: list[wds.DataPipeline], weights: list[float], rng: random.Random) -> Iterator[dict]:
    """Each sample from a source drawn with probability proportional to its weight, until all are exhausted."""
    streams, weights = [iter(s) for s in sources], list(weights)
    while streams:
        i = rng.choices(range(len(streams)), weights)[0]
        try:
            yield next(streams[i])
        except StopIteration:
            del streams[i], weights[i]
