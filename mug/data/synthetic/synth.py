"""Synthetic scenes that behave like web photos, with labels a linear probe can test: one to three copies of a
coloured shape (the main object) on one side of a hollow shape of another kind and colour (the reference), on a
textured background. Each scene records the main object's shape, how many copies there are, where they sit
relative to the reference (left/right/above/below), and the nuisances colour, size, background and texture; a
clean caption states them all for evaluation, varied web-style captions state shape, count and relation in other
words for training.

The labels are meant to be learned, not read off by any random feature (benchmarks/ceiling.py measures both):
the amount of ink says nothing of the shape or the count. Every shape covers the same area at a given diameter
(each is shrunk to the triangle's area inside the same circle), and `count` copies each get 1/sqrt(count) of one
copy's diameter, so the copies' total area depends only on the size (small or large, the total) and a +-10%
jitter. At 64 px with 8 px patches the smallest copy (three small ones) still has a circle of 11 px or more (the
shape fits inside it), the largest single one about 31 px. The reference is drawn hollow, so the image says
which object the relation starts from.

Scenes are drawn at 4x and area-averaged down, which anti-aliases the edges the way web photos are smooth (and
is three times faster than the Lanczos filter, which objects spread over the whole frame made the main cost).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from functools import cache

import numpy as np
from PIL import Image, ImageDraw

SHAPES = ("circle", "square", "triangle", "cross", "star")
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
# The diameter one copy would have, as a fraction of the image side, before the jitter. `count` copies each get
# 1/sqrt(count) of it, so the copies' total area (the ink) is the same whatever the count.
SIZES = {"small": 0.34, "large": 0.44}
REFERENCE_SIZE = "small"  # the reference's size label (not a label of the scene)
REFERENCE_DIAMETER = 0.26  # the hollow reference's diameter, before the jitter
SCALE_JITTER = 0.10  # each scene scales its objects by up to this fraction either way
COUNTS = (1, 2, 3)  # copies of the main object
RELATIONS = ("left", "right", "above", "below")  # where the main objects sit relative to the reference
SEMANTIC_LABELS = ("shape", "count", "relation")  # what a scene is; random-init features cannot read them
BACKGROUNDS = {"grey": (128, 128, 128), "beige": (225, 210, 180), "teal": (40, 120, 120), "navy": (30, 35, 80)}
TEXTURES = ("plain", "stripes", "checks", "dots", "gradient", "noise")
TEXTURE_VARIANTS = 4  # orientations and scales per texture
SUPERSAMPLE = 4
HOLLOW_STROKE = 0.25  # the reference's outline width, as a fraction of its radius
MIN_CONTRAST = 100  # RGB distance an object's colour keeps from the background's (black on navy is too dark)
_GAP = 0.03  # the least space between objects, as a fraction of the image side
_MARGIN = 0.01  # the least space between an object and the image's edge

# Words a caption may use for each label; the first is the one clean captions use.
SHAPE_WORDS = {
    "circle": ("circle", "disc", "round shape"),
    "square": ("square", "box"),
    "triangle": ("triangle",),
    "cross": ("cross", "plus sign"),
    "star": ("star",),
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
RELATION_WORDS = {
    "left": ("to the left of", "left of", "on the left of"),
    "right": ("to the right of", "right of", "on the right of"),
    "above": ("above", "over", "on top of"),
    "below": ("below", "under", "beneath"),
}
INVERSE = {"left": "right", "right": "left", "above": "below", "below": "above"}
HOLLOW_WORDS = ("hollow", "outlined", "empty")

_TEMPLATES = (
    "a photo of {scene} on a {backdrop} background",
    "{scene}",
    "{kind} of {scene}",
    "{scene} on a {backdrop} background",
    "{scene} against a {backdrop} backdrop",
    "{backdrop} background with {scene}",
    "{scene}, {backdrop} background",
    "{scene} #geometry #minimal",
    "{scene}, {size}, on {bg}",
)
_KINDS = ("picture", "image", "illustration", "drawing", "close-up", "clipart", "a photo")


@dataclass(frozen=True)
class SceneObject:
    shape: str
    colour: str
    size: str
    cx: float  # centre, as a fraction of the image side
    cy: float
    scale: float = 1.0  # the jitter on the size's diameter, and for copies 1/sqrt(count)
    hollow: bool = False  # drawn as an outline: the reference

    @property
    def diameter(self) -> float:
        return (REFERENCE_DIAMETER if self.hollow else SIZES[self.size]) * self.scale


@dataclass(frozen=True)
class Scene:
    objects: tuple[SceneObject, ...]  # the main object's copies first; the reference, if any, last
    background: str
    texture: str
    variant: int = 0  # which orientation/scale of the texture
    relation: str | None = None  # where the main objects sit relative to the reference; None without one

    @property
    def main(self) -> tuple[SceneObject, ...]:
        return tuple(o for o in self.objects if not o.hollow)

    @property
    def reference(self) -> SceneObject | None:
        return next((o for o in self.objects if o.hollow), None)

    @property
    def labels(self) -> dict:
        """Semantic labels first (what the main object is, how many, where), then the nuisances."""
        main = self.objects[0]
        semantic = {"shape": main.shape, "count": len(self.main)}
        if self.relation is not None:
            semantic["relation"] = self.relation
        nuisance = {"colour": main.colour, "size": main.size, "background": self.background, "texture": self.texture}
        return semantic | nuisance


def _polygon(shape: str, cx: float, cy: float, r: float) -> list[tuple[float, float]]:
    if shape == "square":
        corners = [(-1, -1), (1, -1), (1, 1), (-1, 1)]
        return [(cx + r * 0.75 * x, cy + r * 0.75 * y) for x, y in corners]  # corners within 1.06 r
    if shape == "triangle":
        return [(cx + r * math.cos(a), cy + r * math.sin(a)) for a in (-math.pi / 2, math.pi / 6, 5 * math.pi / 6)]
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


def _area(points: list[tuple[float, float]]) -> float:
    """The polygon's area (shoelace formula)."""
    edges = zip(points, points[1:] + points[:1], strict=True)
    return abs(sum(x0 * y1 - x1 * y0 for (x0, y0), (x1, y1) in edges)) / 2


# Each shape's radius as a fraction of its object's, so that every shape covers the same area (the triangle's,
# the least within a circle of the object's diameter) and none reaches outside that circle: ink says nothing of
# the shape.
_UNIT_AREA = {shape: math.pi if shape == "circle" else _area(_polygon(shape, 0, 0, 1)) for shape in SHAPES}
SHAPE_RADIUS = {shape: math.sqrt(min(_UNIT_AREA.values()) / area) for shape, area in _UNIT_AREA.items()}


def _draw(draw: ImageDraw.ImageDraw, obj: SceneObject, side: int, ink: tuple[int, ...] | int) -> None:
    """Fill the object, or for a hollow one its outline, which PIL draws inward from the edge."""
    cx, cy, r = obj.cx * side, obj.cy * side, obj.diameter * side / 2 * SHAPE_RADIUS[obj.shape]
    fill, outline, width = (None, ink, max(1, round(r * HOLLOW_STROKE))) if obj.hollow else (ink, None, 1)
    if obj.shape == "circle":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill, outline=outline, width=width)
    else:
        draw.polygon(_polygon(obj.shape, cx, cy, r), fill=fill, outline=outline, width=width)


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
    left = math.floor(min(o.cx - o.diameter / 2 for o in objects) * size) - margin
    top = math.floor(min(o.cy - o.diameter / 2 for o in objects) * size) - margin
    right = math.ceil(max(o.cx + o.diameter / 2 for o in objects) * size) + margin
    bottom = math.ceil(max(o.cy + o.diameter / 2 for o in objects) * size) + margin
    return max(0, left), max(0, top), min(size, right), min(size, bottom)


def render(scene: Scene, size: int = 64) -> Image.Image:
    """The scene as a `size` x `size` RGB image.

    Objects are drawn 4x on the plain background colour and area-averaged down, only in the box they can
    change (resize's `box` gives there the pixels a whole-image resize would); the texture then shows through
    where they leave the background uncovered, inside the hollow reference too.
    """
    background, offset = _background(scene.background, scene.texture, scene.variant, size)
    # The pixels the objects can change: their extent and the pixel PIL may round an edge into.
    left, top, right, bottom = _reach(scene.objects, size, 1)
    side = size * SUPERSAMPLE
    canvas = Image.new("RGBX", (side, side), (*BACKGROUNDS[scene.background], 0))  # colour, and coverage in X
    draw = ImageDraw.Draw(canvas)
    for obj in reversed(scene.objects):
        _draw(draw, obj, side, (*COLOURS[obj.colour], 255))
    box = (left * SUPERSAMPLE, top * SUPERSAMPLE, right * SUPERSAMPLE, bottom * SUPERSAMPLE)
    small = np.asarray(canvas.resize((right - left, bottom - top), Image.BOX, box=box), dtype=np.int16)
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


def _contrasting_colour(rng: random.Random, background: str, other: str | None = None) -> str:
    while True:
        colour = rng.choice(list(COLOURS))
        if colour != other and math.dist(COLOURS[colour], BACKGROUNDS[background]) >= MIN_CONTRAST:
            return colour


def _layout(rng: random.Random, count: int, d_main: float, d_ref: float) -> tuple[list[tuple[float, float]], tuple]:
    """Centres of `count` copies of diameter `d_main` wholly left of a reference of diameter `d_ref` (their
    extents apart by a gap) and not wholly above or below it, none overlapping, all inside the frame; relations
    other than "left" flip or transpose this layout. The copies go anywhere that leaves room for the reference,
    which then goes anywhere right of them: rejection sampling, a few tries per scene on average."""
    r_main, r_ref = d_main / 2, d_ref / 2
    # Centre distance between copies: disjoint circles; two squares corner to corner (corners reach 1.06 r) may
    # come within a third of a pixel at 64 px, which a wider margin would pay for with far more rejected tries.
    clear = d_main + _GAP / 2
    right = 1 - _MARGIN - d_ref - _GAP - r_main  # the copies' centres furthest right
    centres: list[tuple[float, float]] = []
    while len(centres) < count:
        c = (rng.uniform(_MARGIN + r_main, right), rng.uniform(_MARGIN + r_main, 1 - _MARGIN - r_main))
        if all(math.dist(c, other) >= clear for other in centres):
            centres.append(c)
        elif rng.random() < 0.1:  # a crowded start can leave no room: begin again
            centres = []
    rx = rng.uniform(max(x for x, _ in centres) + r_main + _GAP + r_ref, 1 - _MARGIN - r_ref)
    # The reference's centre level with the copies' span, so they are never also wholly above or below it.
    top, bottom = min(y for _, y in centres) - r_main, max(y for _, y in centres) + r_main
    ry = rng.uniform(max(top, _MARGIN + r_ref), min(bottom, 1 - _MARGIN - r_ref))
    return centres, (rx, ry)


def _orient(point: tuple[float, float], relation: str) -> tuple[float, float]:
    """Map a point of the "left" layout to the layout of `relation`."""
    x, y = point
    return {"left": (x, y), "right": (1 - x, y), "above": (y, x), "below": (y, 1 - x)}[relation]


def random_scene(rng: random.Random) -> Scene:
    """`count` copies of the main object on one side of a hollow reference of another shape and colour; every
    label's values equally likely, object colours never too close to the background's."""
    background = rng.choice(list(BACKGROUNDS))
    shape, size = rng.choice(SHAPES), rng.choice(list(SIZES))
    count, relation = rng.choice(COUNTS), rng.choice(RELATIONS)
    colour = _contrasting_colour(rng, background)
    ref_shape = rng.choice([s for s in SHAPES if s != shape])
    ref_colour = _contrasting_colour(rng, background, other=colour)
    scale = 1 + rng.uniform(-SCALE_JITTER, SCALE_JITTER)
    copy_scale = scale / math.sqrt(count)  # the copies' total area does not depend on the count
    centres, ref_centre = _layout(rng, count, SIZES[size] * copy_scale, REFERENCE_DIAMETER * scale)
    objects = [SceneObject(shape, colour, size, *_orient(c, relation), copy_scale) for c in centres]
    objects.append(SceneObject(ref_shape, ref_colour, REFERENCE_SIZE, *_orient(ref_centre, relation), scale, True))
    return Scene(tuple(objects), background, rng.choice(TEXTURES), rng.randrange(TEXTURE_VARIANTS), relation)


def _plural(noun: str, count: int) -> str:
    if count == 1:
        return noun
    return noun + ("es" if noun.endswith(("s", "x", "ch", "sh")) else "s")


def _counted(count_word: str, noun_phrase: str) -> str:
    if count_word == "a":
        return ("an " if noun_phrase[0] in "aeiou" else "a ") + noun_phrase
    return f"{count_word} {noun_phrase}"


def clean_caption(scene: Scene) -> str:
    """The one fixed, fully descriptive caption, in each label's first word: what evaluation uses."""
    main, count = scene.objects[0], len(scene.main)
    phrase = _counted(COUNT_WORDS[count][0], f"{main.size} {main.colour} {_plural(main.shape, count)}")
    ref = scene.reference
    if ref is not None:
        hollow = f"a {HOLLOW_WORDS[0]} {ref.colour} {ref.shape}"  # its size is always the same: not worth a word
        phrase = f"{phrase} {RELATION_WORDS[scene.relation][0]} {hollow}"
    texture = TEXTURE_WORDS[scene.texture][0]
    backdrop = f"{texture} {scene.background}" if texture else scene.background
    return f"a photo of {phrase} on a {backdrop} background"


def _web_phrase(obj: SceneObject, count: int, rng: random.Random) -> str:
    """A counted noun phrase in web style: synonyms, the size sometimes left out, adjectives in either order;
    a hollow object is called so, without its (fixed) size."""
    adjectives = [rng.choice(SIZE_WORDS[obj.size]), rng.choice(COLOUR_WORDS[obj.colour])]
    if rng.random() < 0.25:
        adjectives.reverse()
    if obj.hollow or rng.random() < 0.2:
        adjectives = [a for a in adjectives if a not in SIZE_WORDS[obj.size]]
    if obj.hollow:
        adjectives.insert(0, rng.choice(HOLLOW_WORDS))
    noun = _plural(rng.choice(SHAPE_WORDS[obj.shape]), count)
    return _counted(rng.choice(COUNT_WORDS[count]), " ".join([*adjectives, noun]))


def web_caption(scene: Scene, rng: random.Random) -> str:
    """A caption as people write alt text: one of several templates, synonyms, varied order and casing. It
    names the main object's shape and count and, where there is a reference, the relation, sometimes turned
    around ("a hollow blue square to the right of two red circles")."""
    main = scene.objects[0]
    texture = rng.choice(TEXTURE_WORDS[scene.texture])
    bg = rng.choice(BACKGROUND_WORDS[scene.background])
    phrase = _web_phrase(main, len(scene.main), rng)
    ref = scene.reference
    if ref is not None:
        other = _web_phrase(ref, 1, rng)
        if rng.random() < 0.2:
            phrase = f"{other} {rng.choice(RELATION_WORDS[INVERSE[scene.relation]])} {phrase}"
        else:
            phrase = f"{phrase} {rng.choice(RELATION_WORDS[scene.relation])} {other}"
    fields = {
        "scene": phrase,
        "size": rng.choice(SIZE_WORDS[main.size]),
        "bg": bg,
        "backdrop": f"{texture} {bg}" if texture else bg,
        "kind": rng.choice(_KINDS),
    }
    caption = rng.choice(_TEMPLATES).format(**fields)
    if rng.random() < 0.3:
        caption = caption[0].upper() + caption[1:]
    return caption + "." if rng.random() < 0.15 else caption


def sample_pairs(n: int, size: int = 64, seed: int = 0) -> list[tuple[Image.Image, str]]:
    """`n` single-object scenes on plain backgrounds with clean captions: enough for demos and overfitting."""
    rng = random.Random(seed)
    scenes = [Scene((random_object(rng),), rng.choice(list(BACKGROUNDS)), "plain") for _ in range(n)]
    return [(render(scene, size), clean_caption(scene)) for scene in scenes]
