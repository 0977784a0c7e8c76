"""The training loop's data: endless micro-batches, epoch after epoch, that know the position to resume from."""

from __future__ import annotations

from typing import Any

from mug.data.loading.loader import Loader
from mug.errors import UserError
from mug.train.state import DataPosition


class Batches:
    """Micro-batches from `loader`, starting at `position` (a resumed epoch is replayed up to it: the loader is
    seeded per epoch); `skipped` adds up the samples each finished epoch dropped, by reason."""

    def __init__(self, loader: Loader, position: DataPosition, urls: list[str]):
        self.loader, self.position, self.urls = loader, DataPosition(position.epoch, position.batches), urls
        self.skipped: dict[str, int] = {}
        self._stream = None

    def next(self) -> dict[str, Any]:
        while True:
            if self._stream is None:
                self.loader.set_epoch(self.position.epoch)
                self._stream = iter(self.loader)
                for _ in range(self.position.batches):  # replay a resumed epoch up to where it stopped
                    if next(self._stream, None) is None:
                        raise UserError(f"cannot resume: epoch {self.position.epoch} of {self.urls} is shorter now")
            batch = next(self._stream, None)
            if batch is not None:
                self.position.batches += 1
                return batch
            for reason, n in self.loader.stats.counts.items():
                self.skipped[reason] = self.skipped.get(reason, 0) + n
            if self.position.batches == 0:
                raise UserError(self._no_batch())
            self.position, self._stream = DataPosition(self.position.epoch + 1, 0), None

    def _no_batch(self) -> str:
        """Why an epoch gave no batch: no usable sample at all, or fewer than a batch (in each worker)."""
        shards, size, usable = ", ".join(self.urls), self.loader.cfg.batch_size, self.loader.stats.dropped
        skipped = f" (skipped: {self.skipped})" if self.skipped else ""
        if not usable:
            return f"the shards {shards} yielded no usable samples{skipped}"
        if usable < size:
            return f"batch_size {size} > the {usable} samples available in {shards}{skipped}: lower batch_size"
        workers = self.loader.cfg.num_workers
        return (
            f"batch_size {size} > the samples each of the {workers} loader workers reads ({usable} in all, split by "
            f"shard) in {shards}{skipped}: lower batch_size or num_workers"
        )
