"""Synthetic image-caption pairs: coloured shapes on plain backgrounds, with captions that describe them.

Scenes are drawn at 4x and downsampled, which anti-aliases the edges the way web photos are smooth.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from PIL import Image, ImageDraw

SHAPES = ("circle", "square", "triangle", "diamond", "star", "cross", "hexagon", "ring")
COLOURS = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 80, 220),
    "yellow": (240, 210, 40),
    "purple": (140, 50, 180),
    "orange": (245, 140, 30),
    "white": (245, 245, 245),
    "black": (25, 25, 25),
}
SIZES = {"small": 0.22, "large": 0.4}
BACKGROUNDS = {"grey": (128, 128, 128), "beige": (225, 210, 180), "teal": (40, 120, 120), "navy": (30, 35, 80)}


@dataclass(frozen=True)
class SceneObject:
    shape: str
    colour: str
    size: str
    cx: float  # centre, as a fraction of the image side
    cy: float


def _polygon(shape: str, cx: float, cy: float, r: float) -> list[tuple[float, float]]:
    if shape == "square":
        corners = [(-1, -1), (1, -1), (1, 1), (-1, 1)]
        return [(cx + r * 0.8 * x, cy + r * 0.8 * y) for x, y in corners]
    if shape == "triangle":
        return [(cx + r * math.cos(a), cy + r * math.sin(a)) for a in (-math.pi / 2, math.pi / 6, 5 * math.pi / 6)]
    if shape == "diamond":
        return [(cx, cy - r), (cx + r * 0.7, cy), (cx, cy + r), (cx - r * 0.7, cy)]
    if shape == "hexagon":
        return [(cx + r * math.cos(a * math.pi / 3), cy + r * math.sin(a * math.pi / 3)) for a in range(6)]
    if shape == "star":
        return [
            (
                cx + (r if k % 2 == 0 else r * 0.45) * math.cos(-math.pi / 2 + k * math.pi / 5),
                cy + (r if k % 2 == 0 else r * 0.45) * math.sin(-math.pi / 2 + k * math.pi / 5),
            )
            for k in range(10)
        ]
    if shape == "cross":
        w = r * 0.35
        pts = [
            (-w, -r),
            (w, -r),
            (w, -w),
            (r, -w),
            (r, w),
            (w, w),
            (w, r),
            (-w, r),
            (-w, w),
            (-r, w),
            (-r, -w),
            (-w, -w),
        ]
        return [(cx + x, cy + y) for x, y in pts]
    raise ValueError(f"no polygon for shape '{shape}'")


def render_scene(objects: list[SceneObject], background: str, size: int = 64, scale: int = 4) -> Image.Image:
    """Draw the objects on a plain background; `scale`x supersampling gives anti-aliased edges."""
    side = size * scale
    img = Image.new("RGB", (side, side), BACKGROUNDS[background])
    draw = ImageDraw.Draw(img)
    for obj in objects:
        cx, cy, r = obj.cx * side, obj.cy * side, SIZES[obj.size] * side / 2
        fill = COLOURS[obj.colour]
        if obj.shape == "circle":
            draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill)
        elif obj.shape == "ring":
            draw.ellipse([cx - r, cy - r, cx + r, cy + r], outline=fill, width=max(1, int(r * 0.35)))
        else:
            draw.polygon(_polygon(obj.shape, cx, cy, r), fill=fill)
    return img.resize((size, size), Image.LANCZOS)


def random_object(rng: random.Random) -> SceneObject:
    return SceneObject(
        shape=rng.choice(SHAPES),
        colour=rng.choice(list(COLOURS)),
        size=rng.choice(list(SIZES)),
        cx=rng.uniform(0.3, 0.7),
        cy=rng.uniform(0.3, 0.7),
    )


def describe(obj: SceneObject, background: str) -> str:
    return f"a photo of a {obj.size} {obj.colour} {obj.shape} on a {background} background"


def sample_pairs(n: int, size: int = 64, seed: int = 0) -> list[tuple[Image.Image, str]]:
    """`n` single-object scenes with clean captions: enough for demos and overfitting checks."""
    rng = random.Random(seed)
    pairs = []
    for _ in range(n):
        obj, background = random_object(rng), rng.choice(list(BACKGROUNDS))
        if COLOURS[obj.colour] == BACKGROUNDS[background]:
            continue
        pairs.append((render_scene([obj], background, size), describe(obj, background)))
    return pairs
