"""Synthetic scenes that behave like web photos: one to three coloured shapes on a textured background,
with the labels of the main object, a clean caption for evaluation and varied web-style captions for training.

Scenes are drawn at 4x and downsampled, which anti-aliases the edges the way web photos are smooth.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from functools import cache

import numpy as np
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
SIZES = {"small": 0.22, "large": 0.4}  # object diameter as a fraction of the image side
BACKGROUNDS = {"grey": (128, 128, 128), "beige": (225, 210, 180), "teal": (40, 120, 120), "navy": (30, 35, 80)}
TEXTURES = ("plain", "stripes", "checks", "dots", "gradient", "noise")
TEXTURE_VARIANTS = 4  # orientations and scales per texture
SUPERSAMPLE = 4
_LANCZOS_REACH = 3  # output pixels on either side that a Lanczos-3 output pixel reads (its ringing)

# Words a caption may use for each label; the first is the one clean captions use.
SHAPE_WORDS = {
    "circle": ("circle", "disc", "round shape"),
    "square": ("square", "box"),
    "triangle": ("triangle",),
    "diamond": ("diamond", "rhombus"),
    "star": ("star",),
    "cross": ("cross", "plus sign"),
    "hexagon": ("hexagon",),
    "ring": ("ring", "donut", "hoop"),
}
COLOUR_WORDS = {colour: (colour,) for colour in COLOURS} | {"purple": ("purple", "violet")}
SIZE_WORDS = {"small": ("small", "tiny", "little"), "large": ("large", "big")}
BACKGROUND_WORDS = {"grey": ("grey", "gray"), "beige": ("beige", "cream"), "teal": ("teal",), "navy": ("navy",)}
TEXTURE_WORDS = {
    "plain": ("", "plain", "solid"),  # clean captions say "on a grey background", as the demo's always have
    "stripes": ("striped",),
    "checks": ("checked", "checkered", "chequered"),
    "dots": ("dotted", "polka-dot", "spotted"),
    "gradient": ("gradient", "shaded"),
    "noise": ("noisy", "grainy", "speckled"),
}
COUNT_WORDS = {1: ("a", "a", "one"), 2: ("two", "2", "a pair of"), 3: ("three", "3")}  # "a" becomes "an" as needed

_TEMPLATES = (
    "a photo of {main} on a {backdrop} background",
    "{main}",
    "{colour} {shape}, {size}, on {bg}",
    "{kind} of {main}",
    "{main} on a {backdrop} background",
    "{main} against a {backdrop} backdrop",
    "{backdrop} background with {main}",
    "{shape} in {colour}",
    "{main}, {backdrop} background",
    "{main} #geometry #minimal",
)
_TEMPLATES_WITH_OTHER = (
    "close-up of {main} next to {other}",
    "{main} and {other} on a {backdrop} background",
    "{main} beside {other}",
    "{other} with {main}",
)
_KINDS = ("picture", "image", "illustration", "drawing", "close-up", "clipart", "a photo")


@dataclass(frozen=True)
class SceneObject:
    shape: str
    colour: str
    size: str
    cx: float  # centre, as a fraction of the image side
    cy: float


@dataclass(frozen=True)
class Scene:
    objects: tuple[SceneObject, ...]  # the first is the main object, whose labels are recorded
    background: str
    texture: str
    variant: int = 0  # which orientation/scale of the texture

    @property
    def labels(self) -> dict:
        main = self.objects[0]
        count = sum(o.shape == main.shape and o.colour == main.colour for o in self.objects)
        return {
            "shape": main.shape,
            "colour": main.colour,
            "size": main.size,
            "count": count,
            "background": self.background,
            "texture": self.texture,
        }


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


def _draw(draw: ImageDraw.ImageDraw, obj: SceneObject, side: int, ink: tuple[int, ...]) -> None:
    cx, cy, r = obj.cx * side, obj.cy * side, SIZES[obj.size] * side / 2
    if obj.shape == "circle":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=ink)
    elif obj.shape == "ring":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], outline=ink, width=max(1, int(r * 0.35)))
    else:
        draw.polygon(_polygon(obj.shape, cx, cy, r), fill=ink)


def _pattern(texture: str, variant: int, side: int) -> np.ndarray:
    """Where the texture's second tone shows, in [0, 1] per pixel [side, side], supersampled for sharp ones."""
    if texture == "plain":
        return np.zeros((side, side))
    if texture == "noise":
        rng = np.random.default_rng(variant)
        blotches = Image.fromarray((rng.random((8, 8)) * 255).astype(np.uint8)).resize((side, side), Image.BILINEAR)
        return 0.5 * np.asarray(blotches) / 255 + 0.5 * rng.random((side, side))
    t = (np.arange(side * SUPERSAMPLE) + 0.5) / SUPERSAMPLE  # subsample coordinates in output pixels
    y, x = np.meshgrid(t, t, indexing="ij")
    period = side / (6, 9, 5, 8)[variant]
    if texture == "stripes":
        angle = math.radians((0, 90, 45, 135)[variant])
        tone = (x * math.cos(angle) + y * math.sin(angle)) / period % 1 < 0.5
    elif texture == "checks":
        tone = (x // (period / 2) + y // (period / 2)) % 2 == 1
    elif texture == "dots":
        tone = np.hypot(x % period - period / 2, y % period - period / 2) < 0.25 * period
    elif texture == "gradient":
        angle = math.radians((0, 90, 45, 225)[variant])
        u = (x - side / 2) * math.cos(angle) + (y - side / 2) * math.sin(angle)
        tone = (u - u.min()) / (u.max() - u.min())
    else:
        raise ValueError(f"no pattern for texture '{texture}'")
    return tone.reshape(side, SUPERSAMPLE, side, SUPERSAMPLE).mean(axis=(1, 3))


@cache
def _background(background: str, texture: str, variant: int, side: int) -> tuple[np.ndarray, np.ndarray]:
    """The textured background [side, side, 3] uint8, and how far it departs from its plain colour (int16)."""
    base = np.array(BACKGROUNDS[background], dtype=float)
    # The second tone is a shade of the same colour, so the background keeps its colour name.
    second = base * 0.7 if base.mean() > 110 else base + (255 - base) * 0.3
    offset = np.round(_pattern(texture, variant, side)[..., None] * (second - base)).astype(np.int16)
    return (base + offset).astype(np.uint8), offset


def _reach(objects: tuple[SceneObject, ...], size: int, margin: int) -> tuple[int, int, int, int]:
    """The box of output pixels (left, top, right, bottom) the objects cover, grown by `margin` and clipped."""
    left = math.floor(min(o.cx - SIZES[o.size] / 2 for o in objects) * size) - margin
    top = math.floor(min(o.cy - SIZES[o.size] / 2 for o in objects) * size) - margin
    right = math.ceil(max(o.cx + SIZES[o.size] / 2 for o in objects) * size) + margin
    bottom = math.ceil(max(o.cy + SIZES[o.size] / 2 for o in objects) * size) + margin
    return max(0, left), max(0, top), min(size, right), min(size, bottom)


def render(scene: Scene, size: int = 64) -> Image.Image:
    """The scene as a `size` x `size` RGB image; the main object is drawn last, so it is never hidden.

    Objects are drawn 4x on the plain background colour and Lanczos-downsampled, only in the box they can
    change (resize's `box` gives there the pixels a whole-image resize would); the texture then shows through
    where they leave the background uncovered.
    """
    background, offset = _background(scene.background, scene.texture, scene.variant, size)
    # The pixels the objects can change: their extent, the pixel PIL may round an edge into, the filter's ringing.
    left, top, right, bottom = _reach(scene.objects, size, 1 + _LANCZOS_REACH)
    side = size * SUPERSAMPLE
    canvas = Image.new("RGBX", (side, side), (*BACKGROUNDS[scene.background], 0))  # colour, and coverage in X
    draw = ImageDraw.Draw(canvas)
    for obj in reversed(scene.objects):
        _draw(draw, obj, side, (*COLOURS[obj.colour], 255))
    box = (left * SUPERSAMPLE, top * SUPERSAMPLE, right * SUPERSAMPLE, bottom * SUPERSAMPLE)
    small = np.asarray(canvas.resize((right - left, bottom - top), Image.LANCZOS, box=box), dtype=np.int16)
    showing = 1 - small[..., 3:] / 255
    pixels = background.copy()
    pixels[top:bottom, left:right] = np.clip(small[..., :3] + np.rint(offset[top:bottom, left:right] * showing), 0, 255)
    return Image.fromarray(pixels)


def random_object(rng: random.Random) -> SceneObject:
    return SceneObject(
        shape=rng.choice(SHAPES),
        colour=rng.choice(list(COLOURS)),
        size=rng.choice(list(SIZES)),
        cx=rng.uniform(0.3, 0.7),
        cy=rng.uniform(0.3, 0.7),
    )


def _place(rng: random.Random, size: str, placed: list[SceneObject]) -> tuple[float, float]:
    """A centre inside the frame that keeps clear of the objects already placed, if a few tries find one."""
    margin = SIZES[size] / 2 + 0.03
    for _ in range(20):
        cx, cy = rng.uniform(margin, 1 - margin), rng.uniform(margin, 1 - margin)
        if all(math.hypot(cx - o.cx, cy - o.cy) > 0.45 * (SIZES[size] + SIZES[o.size]) for o in placed):
            break
    return cx, cy


def random_scene(rng: random.Random) -> Scene:
    """One to three objects; each after the first is a copy of the main object (which makes counts like "two
    red circles") or an object of another shape or colour, so the main object's count is exact."""
    main = (rng.choice(SHAPES), rng.choice(list(COLOURS)), rng.choice(list(SIZES)))
    objects: list[SceneObject] = []
    for i in range(rng.choice((1, 1, 2, 2, 3))):
        shape, colour, size = main
        if i > 0 and rng.random() > 0.4:
            while (shape, colour) == main[:2]:
                shape, colour = rng.choice(SHAPES), rng.choice(list(COLOURS))
            size = rng.choice(list(SIZES))
        objects.append(SceneObject(shape, colour, size, *_place(rng, size, objects)))
    return Scene(tuple(objects), rng.choice(list(BACKGROUNDS)), rng.choice(TEXTURES), rng.randrange(TEXTURE_VARIANTS))


def _plural(noun: str, count: int) -> str:
    if count == 1:
        return noun
    return noun + ("es" if noun.endswith(("s", "x", "ch", "sh")) else "s")


def _groups(scene: Scene) -> list[tuple[SceneObject, int]]:
    """Objects grouped by shape, colour and size, with their counts; the main object's group comes first."""
    counts: dict[tuple[str, str, str], int] = {}
    first: dict[tuple[str, str, str], SceneObject] = {}
    for obj in scene.objects:
        key = (obj.shape, obj.colour, obj.size)
        counts[key] = counts.get(key, 0) + 1
        first.setdefault(key, obj)
    return [(first[key], n) for key, n in counts.items()]


def _counted(count_word: str, noun_phrase: str) -> str:
    if count_word == "a":
        return ("an " if noun_phrase[0] in "aeiou" else "a ") + noun_phrase
    return f"{count_word} {noun_phrase}"


def clean_caption(scene: Scene) -> str:
    """The one fixed, fully descriptive caption, in each label's first word: what evaluation uses."""
    phrases = [
        _counted(COUNT_WORDS[n][0], f"{obj.size} {obj.colour} {_plural(obj.shape, n)}") for obj, n in _groups(scene)
    ]
    texture = TEXTURE_WORDS[scene.texture][0]
    backdrop = f"{texture} {scene.background}" if texture else scene.background
    others = f" next to {' and '.join(phrases[1:])}" if len(phrases) > 1 else ""
    return f"a photo of {phrases[0]}{others} on a {backdrop} background"


def _web_phrase(obj: SceneObject, count: int, rng: random.Random) -> str:
    """A counted noun phrase in web style: synonyms, the size sometimes left out, adjectives in either order."""
    adjectives = [rng.choice(SIZE_WORDS[obj.size]), rng.choice(COLOUR_WORDS[obj.colour])]
    if rng.random() < 0.25:
        adjectives.reverse()
    if rng.random() < 0.2:
        adjectives = [a for a in adjectives if a not in SIZE_WORDS[obj.size]]
    noun = _plural(rng.choice(SHAPE_WORDS[obj.shape]), count)
    return _counted(rng.choice(COUNT_WORDS[count]), " ".join([*adjectives, noun]))


def web_caption(scene: Scene, rng: random.Random) -> str:
    """A caption as people write alt text: one of several templates, synonyms, varied order and casing."""
    groups = _groups(scene)
    main, count = groups[0]
    texture = rng.choice(TEXTURE_WORDS[scene.texture])
    bg = rng.choice(BACKGROUND_WORDS[scene.background])
    fields = {
        "main": _web_phrase(main, count, rng),
        "other": _web_phrase(*rng.choice(groups[1:]), rng) if len(groups) > 1 else "",
        "shape": _plural(rng.choice(SHAPE_WORDS[main.shape]), count),
        "colour": rng.choice(COLOUR_WORDS[main.colour]),
        "size": rng.choice(SIZE_WORDS[main.size]),
        "bg": bg,
        "backdrop": f"{texture} {bg}" if texture else bg,
        "kind": rng.choice(_KINDS),
    }
    caption = rng.choice(_TEMPLATES + (_TEMPLATES_WITH_OTHER if len(groups) > 1 else ())).format(**fields)
    if rng.random() < 0.3:
        caption = caption[0].upper() + caption[1:]
    return caption + "." if rng.random() < 0.15 else caption


def sample_pairs(n: int, size: int = 64, seed: int = 0) -> list[tuple[Image.Image, str]]:
    """`n` single-object scenes on plain backgrounds with clean captions: enough for demos and overfitting."""
    rng = random.Random(seed)
    scenes = [Scene((random_object(rng),), rng.choice(list(BACKGROUNDS)), "plain") for _ in range(n)]
    return [(render(scene, size), clean_caption(scene)) for scene in scenes]
