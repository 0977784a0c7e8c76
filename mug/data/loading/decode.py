"""Image bytes -> RGB pixels, the one decoder of the loader and the validation gate, so the gate's decode failures
are exactly the samples the loader will skip as `bad_image`.

JPEGs go through simplejpeg (libjpeg-turbo straight into a numpy array): the same pixels as torchvision's and PIL's
decoders, 1.3x (torchvision) and 1.2-3x (PIL) faster. PIL reads every other format and has the last word on a JPEG
simplejpeg refuses, so a corrupt one fails with PIL's reason, and an image over PIL's decompression-bomb limit
gets PIL's verdict (a warning up to twice the limit, an error beyond).
"""

from __future__ import annotations

import io
import re

import numpy as np
import simplejpeg
from PIL import Image


class BadImage(Exception):
    """The bytes are not an image simplejpeg or PIL can decode."""


def _decode_jpeg(data: bytes, into: np.ndarray | None) -> np.ndarray:
    """simplejpeg, within PIL's decompression-bomb limit: simplejpeg spends seconds and gigabytes on a corrupt
    header claiming a huge image before it fails (docs/benchmarks.md); PIL refuses such an image from its header."""
    height, width, _, _ = simplejpeg.decode_jpeg_header(data)
    if height * width > (Image.MAX_IMAGE_PIXELS or float("inf")):
        raise ValueError("more pixels than PIL's decompression-bomb limit")
    fits = into is not None and width == into.shape[1] and height <= into.shape[0]
    return simplejpeg.decode_jpeg(data, "RGB", buffer=into if fits else None)


def decode(data: bytes, into: np.ndarray | None = None) -> np.ndarray:
    """RGB uint8 [H, W, 3]; raises BadImage naming what went wrong. A JPEG as wide as `into` (contiguous uint8
    [H', W, 3]) and no taller is decoded straight into its top rows, saving a copy: the result is then a view of
    `into`. Anything else comes back in memory of its own."""
    if data[:2] == b"\xff\xd8":
        try:
            return _decode_jpeg(data, into)
        except ValueError:
            pass  # corrupt, too large, or a JPEG flavour only PIL reads
    try:
        return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    except Exception as err:  # PIL's plugins raise many types (OSError, SyntaxError, ValueError...) on bad bytes
        # PIL names the in-memory buffer ("<_io.BytesIO object at 0x...>"): noise in a message.
        message = re.sub(r" <_io.BytesIO object at 0x[0-9a-f]+>", "", str(err))
        raise BadImage(f"{type(err).__name__}: {message}") from err
