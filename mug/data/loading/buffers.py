"""Batch buffers a DataLoader worker reuses once the training process is done with them.

A worker that allocates every batch afresh in shared memory pays for its pages being created, zeroed, faulted in
and freed each time, a third of the JPEG decoding's cost at 224 px (docs/benchmarks.md). Linux's default
`shmem_enabled=never` rules out huge pages for /dev/shm, so the way out is not to free them: each worker keeps a
few buffer sets and reuses a set once the training process has let go of the batch built in it.

Who holds what lives in a small shared table (`busy`, a row per worker): the worker marks a set busy when it
hands a batch over; the training process marks it free when the memory of every tensor of that batch is
released (finalizers on the tensors' storages, which views and numpy arrays of them keep alive too). With every
set busy the worker allocates a fresh batch, as before: reuse never waits and never overwrites a batch in use.

Handing a tensor over costs time even when its memory is reused (its file descriptor is passed and mapped again),
so without pinning a reused set travels as its index alone: the training process keeps the set it received
the first time (`MappedSets`) and makes the batch's tensors from it. With pinning, DataLoader's pin thread needs
the tensors themselves, and they are sent every time.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import torch

SETS_PER_WORKER = 4  # DataLoader's 2 batches in flight per worker, one in the step, one being filled


def busy_table(workers: int) -> torch.Tensor:
    """The shared busy flags of `workers` workers' buffer sets, made by the training process for one epoch."""
    return torch.zeros(workers, SETS_PER_WORKER, dtype=torch.int32).share_memory_()


class BufferPool:
    """One worker's buffer sets (a dict of tensors each, made by `make`); without a busy row, every set is fresh."""

    def __init__(self, busy: torch.Tensor | None, make: Callable[[], dict[str, torch.Tensor]]):
        self.busy, self.make = busy, make
        self.sets: dict[int, dict[str, torch.Tensor]] = {}

    def take(self) -> tuple[int | None, bool, dict[str, torch.Tensor]]:
        """(index of the set, whether it was used before, the set); index None for a fresh set off the books."""
        if self.busy is not None:
            for index, taken in enumerate(self.busy.tolist()):
                if not taken:
                    self.busy[index] = 1
                    reused = index in self.sets
                    if not reused:
                        self.sets[index] = self.make()
                    return index, reused, self.sets[index]
        return None, False, self.make()


def release_when_dropped(tensors: Iterable[torch.Tensor], busy: torch.Tensor, worker: int, index: int) -> None:
    """Mark `worker`'s set `index` free once the memory of all `tensors` (a batch built in it) is released."""
    storages = {id(s): s for s in (t.untyped_storage() for t in tensors)}.values()
    pending = [len(storages)]

    def dropped() -> None:
        pending[0] -= 1
        if not pending[0]:
            busy[worker, index] = 0

    for storage in storages:
        weakref.finalize(storage, dropped)


class MappedSets:
    """The training process's view of the workers' buffer sets, from the first batch each set carried."""

    def __init__(self, batch_size: int):
        self.batch_size = batch_size
        self.sets: dict[tuple[int, int], dict[str, np.ndarray]] = {}

    def tensors(self, batch: dict[str, Any], worker: int, index: int) -> dict[str, torch.Tensor]:
        """The batch's tensors as new tensors over set `index` of `worker` (the set kept from the batch's own
        tensors the first time): each batch gets storages of its own, for `release_when_dropped` to watch."""
        kept = self.sets.get((worker, index))
        if kept is None:  # numpy views of the whole set keep its memory mapped here
            kept = self.sets[worker, index] = {
                name: t.as_strided((self.batch_size, *t.shape[1:]), t.stride(), t.storage_offset()).numpy()
                for name, t in batch.items()
                if isinstance(t, torch.Tensor)
            }
        n = len(batch["key"])
        return {name: torch.from_numpy(array)[:n] for name, array in kept.items()}
