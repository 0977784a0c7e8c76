"""What the loader skips, and why: a worker counts each unusable sample or shard by reason (`Skips`), its counts
ride inside its next batch ("skipped"), and `Loader` adds them up per epoch (`LoaderStats`)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

# Why a sample or shard was skipped: the keys of `LoaderStats.counts`.
REASONS = (
    "bad_image",  # the image bytes do not decode
    "missing_image",  # no .jpg/.jpeg/.png/.webp in the sample
    "missing_caption",  # no .txt, and the objective reads captions
    "bad_json",  # an evaluation sample's .json does not parse
    "duplicate_file",  # a sample holds the same extension twice
    "unreadable_shard",  # cannot be opened or is not a tar (missing file, failing pipe: command, garbage)
    "truncated_shard",  # cut short or garbled after its first member; the samples before the damage are kept
    "empty_shard",  # a readable tar without a single file
)


@dataclass
class LoaderStats:
    """One epoch's figures: batches and samples delivered, and skipped samples/shards by reason."""

    batches: int = 0
    samples: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    dropped: int = 0  # good samples left out in training's last partial batch (one per worker)
    reused_buffers: int = 0  # batches that came in a worker's reused shared memory (mug.data.loading.buffers)

    @property
    def skipped(self) -> int:
        return sum(self.counts.values())

    def add(self, counts: dict[str, int]) -> None:
        for reason, n in counts.items():
            self.counts[reason] = self.counts.get(reason, 0) + n


class Skip(Exception):
    """A sample that cannot be used; `reason` is one of `REASONS`."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class Skips:
    """A worker's skip counts since its last batch."""

    def __init__(self) -> None:
        self.pending: Counter[str] = Counter()
        self.dropped = 0  # good samples of the last partial batch, which training leaves out

    def count(self, reason: str) -> None:
        self.pending[reason] += 1

    def drain(self) -> dict[str, int]:
        counts, self.pending = dict(self.pending), Counter()
        return counts
