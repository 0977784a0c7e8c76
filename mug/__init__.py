"""MUG: multi-modal generative vision pre-training on web image-text pairs."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("mug")
except PackageNotFoundError:  # a source tree on PYTHONPATH without `pip install`
    __version__ = "0.0.0+unknown"
