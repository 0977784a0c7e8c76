"""What every standalone report page shares: its base style, and writes that a reader never sees half-done."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
.banner { padding: 0.8em 1em; border-radius: 6px; font-size: 1.3em; font-weight: 600; color: #fff; }
.banner.passed { background: #2e7d32; } .banner.failed { background: #c62828; }
table { border-collapse: collapse; width: 100%; margin: 0.5em 0 1.5em; }
th, td { text-align: left; padding: 0.35em 0.6em; border-bottom: 1px solid #ddd; vertical-align: top; }
tr.passed td.status { background: #c8e6c9; } tr.failed td.status { background: #ffcdd2; }
tr.failed { background: #fff3f3; } tr.skipped { color: #777; }
td.status { font-weight: 600; } .num { font-variant-numeric: tabular-nums; }
.examples { font-size: 0.85em; color: #555; margin: 0.3em 0 0; padding-left: 1.2em; }
.hists { display: flex; flex-wrap: wrap; gap: 1.5em; } figure { margin: 0; }
figcaption { font-weight: 600; margin-bottom: 0.2em; } .meta { color: #555; }
code { font-size: 0.9em; }
"""


def write_text_atomic(path: Path, text: str) -> None:
    """Write via a temp file in the same folder and os.replace, so a reader never sees half a file. The temp
    file is created private (0600); the result gets the usual 0644 like any file `open()` would create."""
    with tempfile.NamedTemporaryFile("w", encoding="utf-8", dir=path.parent, prefix=f".{path.name}", delete=False) as f:
        f.write(text)
    os.chmod(f.name, 0o644)
    os.replace(f.name, path)
