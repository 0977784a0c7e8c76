"""Where mug keeps what it can compute or fetch again (random-init floors, data fetched by DVC address):
$MUG_CACHE_DIR, default ~/.cache/mug, one folder per kind."""

import os
from pathlib import Path


def cache_dir(kind: str) -> Path:
    return Path(os.environ.get("MUG_CACHE_DIR") or Path.home() / ".cache" / "mug") / kind
