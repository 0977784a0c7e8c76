"""Memory for the batches a worker hands over: shared memory in a DataLoader worker, so handing a batch over
copies nothing, and huge pages asked for in-process (a fresh batch of tens of MB would otherwise fault in 4 KiB
at a time). Which of a worker's sets are in use is `mug.data.loading.buffers`' job."""

from __future__ import annotations

import ctypes
import math
import mmap
import sys
from collections.abc import Callable

import torch
from torch.utils.data import get_worker_info


def shared_empty(shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    """An empty contiguous tensor in shared memory: handing it to another process copies nothing."""
    empty = torch.empty(0, dtype=dtype)
    return empty.new(empty._typed_storage()._new_shared(math.prod(shape))).view(shape)


def _madvise_op() -> Callable[[int, int, int], int] | None:
    try:
        madvise = ctypes.CDLL(None).madvise
    except (AttributeError, OSError):  # not Linux, or no libc symbols in this process
        return None
    madvise.argtypes, madvise.restype = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int), ctypes.c_int
    return madvise


_madvise = _madvise_op() if sys.platform == "linux" else None
_MADV_HUGEPAGE, _HUGE_PAGE = 14, 2 << 20


def _ask_for_huge_pages(tensor: torch.Tensor) -> None:
    """A fresh batch of tens of MB (64 float images at 224 px: 38 MB) comes from a new mapping that the first write
    faults in 4 KiB at a time: 9,400 faults, 250 us per sample, more than decoding the JPEG. Transparent huge pages
    (in Linux's `madvise` or `always` mode) fault it in 2 MiB at a time. A hint that changes no data, so rounding
    out to whole pages is harmless; where unsupported, nothing changes."""
    nbytes = tensor.numel() * tensor.element_size()
    if _madvise is None or nbytes < _HUGE_PAGE:
        return
    start = tensor.data_ptr() & ~(mmap.PAGESIZE - 1)
    _madvise(start, tensor.data_ptr() + nbytes - start, _MADV_HUGEPAGE)


def handover_tensor(shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    """An empty tensor for a batch: in a DataLoader worker in shared memory, so handing it over copies nothing
    (as torch's default_collate does); in-process with huge pages asked for."""
    if get_worker_info() is None:
        tensor = torch.empty(shape, dtype=dtype)
        _ask_for_huge_pages(tensor)
        return tensor
    return shared_empty(shape, dtype)
