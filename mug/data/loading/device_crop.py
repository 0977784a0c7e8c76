"""The loader's crop, resize and flip for a whole batch on its device (`LoaderConfig.crop_on_device`).

A worker then only decodes each image whole into a fixed canvas and draws its box and flip: resizing a crop to
224 px costs a CPU core 83 us a sample, a quarter of decoding the JPEG, and here it is two batched matrix products
on the GPU. Each axis's resize is a [size, canvas] matrix per image whose rows hold OpenCV's weights for the box:
bicubic (A = -0.75, half-pixel centres, the crop's edge pixels repeated beyond it) or, where the crop shrinks by
more than 1.5x, pixel-area averaging, the rules of `mug.data.loading.augment.resize_into`. A flip reverses the rows. The
pixels are those of the CPU path within one grey level (OpenCV rounds its weights to 11 bits), and nothing
outside a box, such as the canvas beyond a smaller image, reaches the output.
"""

from __future__ import annotations

import torch

from mug.data.loading.augment import AREA_BEYOND, normalize

_A = -0.75  # the bicubic kernel's parameter in OpenCV, which the CPU path uses (PIL's is -0.5)


def _cubic(x: torch.Tensor) -> torch.Tensor:
    x = x.abs()
    near = ((_A + 2) * x - (_A + 3)) * x * x + 1
    far = ((x - 5) * x + 8) * x * _A - 4 * _A
    return torch.where(x <= 1, near, torch.where(x < 2, far, torch.zeros_like(x)))


def _bicubic_weights(start: torch.Tensor, length: torch.Tensor, size: int, extent: int) -> torch.Tensor:
    """[B, size, extent]: output pixel i of each image samples its box [start, start + length) bicubically."""
    scale = (length / size).unsqueeze(1)  # [B, 1]
    centre = (torch.arange(size, device=start.device, dtype=scale.dtype) + 0.5) * scale - 0.5  # [B, size]
    left = centre.floor()
    taps = left.unsqueeze(2) + torch.arange(-1, 3, device=start.device, dtype=scale.dtype)  # [B, size, 4]
    weights = _cubic(taps - centre.unsqueeze(2))
    inside = taps.clamp(min=0).minimum((length - 1).view(-1, 1, 1))  # the crop's edge pixels repeat beyond it
    index = (inside + start.view(-1, 1, 1)).unsqueeze(3)  # [B, size, 4, 1]
    pixel = torch.arange(extent, device=start.device, dtype=scale.dtype)
    # Taps repeated at an edge add up in a fixed order (scatter_add_ on a GPU would not): same pixels every run.
    return (weights.unsqueeze(3) * (index == pixel)).sum(2)


def _area_weights(start: torch.Tensor, length: torch.Tensor, size: int, extent: int) -> torch.Tensor:
    """[B, size, extent]: output pixel i of each image averages the part of its box it covers, pixel by pixel."""
    scale = (length / size).view(-1, 1, 1)
    lo = torch.arange(size, device=start.device, dtype=scale.dtype).view(1, -1, 1) * scale  # in box pixels
    pixel = torch.arange(extent, device=start.device, dtype=scale.dtype).view(1, 1, -1) - start.view(-1, 1, 1)
    overlap = (torch.minimum(lo + scale, pixel + 1) - torch.maximum(lo, pixel)).clamp(min=0)
    return overlap / scale


def resize_weights(
    start: torch.Tensor, length: torch.Tensor, flip: torch.Tensor, area: torch.Tensor, size: int, extent: int
) -> torch.Tensor:
    """One axis's resize matrices, [B, size, extent], for boxes [start, start + length) of a canvas `extent` long;
    `area` picks pixel-area averaging per image, `flip` reverses the output."""
    weights = torch.where(
        area.view(-1, 1, 1),
        _area_weights(start, length, size, extent),
        _bicubic_weights(start, length, size, extent),
    )
    return torch.where(flip.view(-1, 1, 1), weights.flip(1), weights)


def crop_batch(canvas: torch.Tensor, boxes: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 canvases [B, 3, H, W] (channels-last memory) and boxes [B, 5] (left, top, width, height, flip: canvas
    pixels and 0/1, as the loader delivers them) -> ImageNet-normalised float32 [B, 3, size, size], channels-last,
    on the canvases' device."""
    boxes = boxes.to(canvas.device, torch.float32)
    left, top, width, height, flip = boxes.unbind(1)
    n, _, extent_y, extent_x = canvas.shape
    area = torch.maximum(width, height) > AREA_BEYOND * size
    no_flip = torch.zeros_like(area)
    rows = resize_weights(top, height, no_flip, area, size, extent_y)  # [B, size, H]
    cols = resize_weights(left, width, flip > 0.5, area, size, extent_x)  # [B, size, W]
    pixels = canvas.permute(0, 2, 3, 1).float()  # [B, H, W, 3]: the canvas's own memory order
    tall = torch.bmm(rows, pixels.reshape(n, extent_y, extent_x * 3))  # [B, size (y), W * 3]
    by_column = tall.view(n, size, extent_x, 3).transpose(1, 2).reshape(n, extent_x, size * 3)
    resized = torch.bmm(cols, by_column).view(n, size, size, 3)  # [B, x, y, 3]
    # Rounded and clipped like the CPU path's uint8 result, so both paths feed the model the same values.
    return normalize(resized.round_().clamp_(0, 255).permute(0, 3, 2, 1))
