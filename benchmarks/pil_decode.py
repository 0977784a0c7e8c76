"""PIL decoding the JPEGs of a folder of shards, in a process of its own: the loader benchmark's baseline.

PIL's speed on the same JPEGs swings with the process's memory history: one pass over 2,000 256 px JPEGs took 355 to
750 us a JPEG on the benchmark machine, depending on what else the process had imported or allocated (by default PIL
hands each image's memory back, and the next image may fault its pages in anew). Here, in a process of its own, PIL
keeps up to 16 freed memory blocks for reuse and the best of three passes is kept: ~357 us, steadily. That is the
baseline at its best. Prints samples/s.

    python benchmarks/pil_decode.py FOLDER
"""

from __future__ import annotations

import io
import sys
import time
from pathlib import Path

from PIL import Image

from mug.data.loading.tar import tar_samples


def jpegs_of(folder: Path) -> list[bytes]:
    out = []
    for path in sorted(folder.glob("*.tar")):
        with open(path, "rb") as stream:
            out += [files["jpg"] for _, files in tar_samples(stream)]
    return out


def pil_rate(jpegs: list[bytes]) -> float:
    """Samples/s of `Image.open(...).convert("RGB")` of bytes in memory, after a warm-up (plugin registration)."""
    for data in jpegs[:50]:
        Image.open(io.BytesIO(data)).convert("RGB")
    start = time.perf_counter()
    for data in jpegs:
        Image.open(io.BytesIO(data)).convert("RGB")
    return len(jpegs) / (time.perf_counter() - start)


if __name__ == "__main__":
    Image.core.set_blocks_max(16)
    jpegs = jpegs_of(Path(sys.argv[1]))
    print(max(pil_rate(jpegs) for _ in range(3)))
