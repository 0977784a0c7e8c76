"""Errors a user can cause and fix; the CLI prints them in one line and exits with code 2."""

import contextlib
from collections.abc import Iterator


class UserError(Exception):
    """Bad input from the user (path, file, config, checkpoint): reported, never a traceback."""


class ConfigError(UserError, ValueError):
    """A configuration value a user can fix; the message names the field (`mug.fields`)."""


@contextlib.contextmanager
def writing(what: str) -> Iterator[None]:
    """An OSError while writing `what` (a full disk, a file where a folder should be, no permission) is the
    place's fault, not a bug: a UserError naming the path and the cause."""
    try:
        yield
    except OSError as err:
        where = f" {err.filename}" if err.filename is not None else ""
        raise UserError(f"could not write {what}{where}: {err.strerror or err}") from err
