"""Image I/O for the model: load with a clear error, resize/crop/normalise, and back to PIL for pictures."""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image, UnidentifiedImageError
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

from mug.errors import UserError

_MEAN = torch.tensor(IMAGENET_DEFAULT_MEAN).view(3, 1, 1)
_STD = torch.tensor(IMAGENET_DEFAULT_STD).view(3, 1, 1)


def load_image(path: str | Path) -> Image.Image:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"image {path} does not exist")
    try:
        with Image.open(path) as img:
            return img.convert("RGB")
    except (UnidentifiedImageError, OSError) as err:
        raise UserError(f"{path} is not a readable image ({err.__class__.__name__})") from err


def to_tensor(img: Image.Image, size: int) -> torch.Tensor:
    """Resize the shorter side to `size`, centre-crop, normalise with ImageNet statistics: [3, size, size].
    The loader's evaluation transform, so the demo sees images exactly as evaluation does."""
    from mug.data.loading.augment import center_box, normalize, resized_crop

    rgb = img.convert("RGB")
    pixels = torch.frombuffer(bytearray(rgb.tobytes()), dtype=torch.uint8).view(rgb.height, rgb.width, 3)
    return normalize([resized_crop(pixels.permute(2, 0, 1), center_box(rgb.width, rgb.height), size)])[0]


def to_pil(image: torch.Tensor) -> Image.Image:
    """A normalised [3, H, W] tensor back to an 8-bit picture."""
    pixels = ((image.detach().float().cpu() * _STD + _MEAN).clamp(0, 1) * 255).round().byte()
    return Image.fromarray(pixels.permute(1, 2, 0).numpy())
