"""Errors a user can cause and fix; the CLI prints them in one line and exits with code 2."""


class UserError(Exception):
    """Bad input from the user (path, file, config, checkpoint): reported, never a traceback."""
