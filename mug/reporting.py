"""What every standalone report page shares: its templates (mug/templates: base.html holds the style and layout,
one page each extends it), and writes that a reader never sees half-done."""

from __future__ import annotations

import os
import tempfile
from functools import cache
from pathlib import Path

import jinja2


@cache
def _templates() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("mug", "templates"),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined,  # a name the page uses and the code does not pass is a bug, not a blank
    )


def render(page: str, **context: object) -> str:
    """The page `page` (a file in mug/templates) filled in with `context`; every value is HTML-escaped unless the
    template marks it safe."""
    return _templates().get_template(page).render(**context)


def write_text_atomic(path: Path, text: str) -> None:
    """Write via a temp file in the same folder and os.replace, so a reader never sees half a file. The temp
    file is created private (0600); the result gets the usual 0644 like any file `open()` would create."""
    with tempfile.NamedTemporaryFile("w", encoding="utf-8", dir=path.parent, prefix=f".{path.name}", delete=False) as f:
        f.write(text)
    os.chmod(f.name, 0o644)
    os.replace(f.name, path)
