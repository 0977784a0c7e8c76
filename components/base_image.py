"""The base image every component runs in: the project's image at the package version, or $MUG_IMAGE (read when
the components are imported, i.e. at compile time) for a registry or tag of your own."""

import os

import mug

REPOSITORY = "ghcr.io/mug-ml/mug"


def mug_image() -> str:
    return os.environ.get("MUG_IMAGE") or f"{REPOSITORY}:{mug.__version__}"


BASE_IMAGE = mug_image()
