"""The synthetic web corpus: scenes and captions, the img2dataset shard format, noise rates, determinism."""

import hashlib
import io
import itertools
import json
import math
import random
import tarfile
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image, ImageDraw

from mug.data.synthetic.corpus import UNRELATED_KINDS, NoiseConfig, synthesize_corpus
from mug.data.synthetic.shards import ShardSample, write_shard
from mug.data.synthetic.synth import (
    BACKGROUNDS,
    COLOUR_WORDS,
    COLOURS,
    COUNT_WORDS,
    COUNTS,
    HOLLOW_WORDS,
    INVERSE,
    MIN_CONTRAST,
    RELATION_WORDS,
    RELATIONS,
    SCALE_JITTER,
    SHAPE_WORDS,
    SHAPES,
    SIZES,
    SUPERSAMPLE,
    TEXTURES,
    Scene,
    SceneObject,
    _background,
    _draw,
    clean_caption,
    random_scene,
    render,
    sample_pairs,
    web_caption,
)
from mug.errors import UserError

# img2dataset's per-sample fields, in its parquet column order; the .json holds the same fields.
PARQUET_COLUMNS = [
    "key",
    "caption",
    "url",
    "status",
    "error_message",
    "width",
    "height",
    "original_width",
    "original_height",
    "sha256",
]
JSON_FIELDS = set(PARQUET_COLUMNS)
STATS_FIELDS = {"count", "successes", "failed_to_download", "failed_to_resize", "duration", "start_time", "end_time"}


def read_tar(path: Path) -> list[tuple[tarfile.TarInfo, bytes]]:
    with tarfile.open(path) as tar:
        return [(member, tar.extractfile(member).read()) for member in tar.getmembers()]


def read_split(directory: Path) -> list[dict]:
    """Every sample of a shard set in order: {"jpg": bytes, "txt": str, "json": dict}."""
    samples = []
    for path in sorted(directory.glob("*.tar")):
        members = read_tar(path)
        for i in range(0, len(members), 3):
            (_, jpg), (_, meta), (_, txt) = members[i : i + 3]
            samples.append({"jpg": jpg, "txt": txt.decode(), "json": json.loads(meta)})
    return samples


def decodes(jpeg: bytes) -> bool:
    try:
        with Image.open(io.BytesIO(jpeg)) as img:
            img.load()
        return True
    except Exception:
        return False


def mentions(caption: str, labels: dict) -> bool:
    caption = caption.lower()
    return any(w in caption for w in SHAPE_WORDS[labels["shape"]]) and any(
        w in caption for w in COLOUR_WORDS[labels["colour"]]
    )


def file_hashes(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in root.rglob("*") if p.is_file()
    }


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    out = tmp_path_factory.mktemp("corpus")
    summary = synthesize_corpus(out, 2000, 300, shard_size=512, progress=False)
    return out, summary


# Scenes and captions


LABELS = {"shape", "count", "relation", "colour", "size", "background", "texture"}
_COUNT_NAMES = {2: ("two", "2", "pair"), 3: ("three", "3")}


def relation_of(scene: Scene) -> str | None:
    """The relation the positions show: the side of the reference that every main object lies wholly on."""
    ref = scene.reference
    main = scene.main
    sides = {
        "left": all(o.cx + o.diameter / 2 < ref.cx - ref.diameter / 2 for o in main),
        "right": all(o.cx - o.diameter / 2 > ref.cx + ref.diameter / 2 for o in main),
        "above": all(o.cy + o.diameter / 2 < ref.cy - ref.diameter / 2 for o in main),
        "below": all(o.cy - o.diameter / 2 > ref.cy + ref.diameter / 2 for o in main),
    }
    (side,) = [s for s, holds in sides.items() if holds] or [None]
    return side


def says_relation(caption: str, scene: Scene) -> bool:
    """The caption states the scene's relation, with the main objects first or (turned around) the reference."""
    caption = caption.lower()
    hollow = min((caption.find(w) for w in HOLLOW_WORDS if w in caption), default=-1)
    if hollow < 0:
        return False
    main_shape = min(caption.find(w) for w in SHAPE_WORDS[scene.objects[0].shape] if w in caption)
    relation = scene.relation if main_shape < hollow else INVERSE[scene.relation]
    return any(w in caption for w in RELATION_WORDS[relation])


def says_count(caption: str, count: int) -> bool:
    words = set(caption.lower().replace(",", " ").split())
    named = {n for n, names in _COUNT_NAMES.items() if words & set(names)}
    return named == ({count} if count > 1 else set())


@pytest.fixture(scope="module")
def scenes():
    rng = random.Random(0)
    return [random_scene(rng) for _ in range(2000)]


def test_vocabulary_is_distinct_at_64_px():
    assert len(SHAPES) >= 5 and len(COLOURS) >= 8 and len(SIZES) == 2 and COUNTS == (1, 2, 3)
    assert set(RELATIONS) == {"left", "right", "above", "below"}
    assert set(TEXTURES) >= {"plain", "stripes", "checks", "dots", "gradient", "noise"}
    # The smallest copy (three small ones, the jitter at its least) still spans more than a patch of 8 px.
    assert min(SIZES.values()) * (1 - SCALE_JITTER) / math.sqrt(max(COUNTS)) * 64 >= 11


def test_ink_says_nothing_of_shape_or_count(scenes):
    """Every shape covers the same area at the same diameter, and the copies' total area does not depend on how
    many there are: a probe cannot read shape or count from the amount of ink."""
    side = 64 * SUPERSAMPLE
    areas = {}
    for shape in SHAPES:
        canvas = Image.new("L", (side, side), 0)
        _draw(ImageDraw.Draw(canvas), SceneObject(shape, "red", "large", 0.5, 0.5), side, 255)
        areas[shape] = np.asarray(canvas, dtype=float).sum() / 255
    assert max(areas.values()) / min(areas.values()) < 1.03, areas
    for scene in scenes:
        main = scene.objects[0]
        total = sum(o.diameter**2 for o in scene.main) / SIZES[main.size] ** 2  # the jitter squared
        assert (1 - SCALE_JITTER) ** 2 - 1e-9 <= total <= (1 + SCALE_JITTER) ** 2 + 1e-9
    mean_total = {
        count: np.mean([sum(o.diameter**2 for o in s.main) for s in scenes if s.labels["count"] == count])
        for count in COUNTS
    }
    assert max(mean_total.values()) / min(mean_total.values()) < 1.05, mean_total


def test_scene_labels_every_value_about_equally_often(scenes):
    for scene in scenes:
        assert set(scene.labels) == LABELS
    expected = {"shape": SHAPES, "count": COUNTS, "relation": RELATIONS, "size": tuple(SIZES)}
    for name, values in expected.items():
        counts = {v: sum(s.labels[name] == v for s in scenes) for v in values}
        assert min(counts.values()) > 0.7 * len(scenes) / len(values), (name, counts)


def test_count_is_the_copies_of_the_main_object_beside_one_hollow_reference(scenes):
    for scene in scenes:
        main, ref = scene.objects[0], scene.reference
        assert scene.objects[-1] is ref and sum(o.hollow for o in scene.objects) == 1
        copies = scene.objects[:-1]
        assert scene.labels["count"] == len(copies)
        assert len({(o.shape, o.colour, o.size, o.scale) for o in copies}) == 1  # copies are alike
        assert ref.shape != main.shape and ref.colour != main.colour
        for a, b in itertools.combinations(copies, 2):
            assert math.dist((a.cx, a.cy), (b.cx, b.cy)) >= a.diameter  # copies never touch
        for o in scene.objects:
            assert o.diameter / 2 <= min(o.cx, o.cy, 1 - o.cx, 1 - o.cy)  # inside the frame
            assert math.dist(COLOURS[o.colour], BACKGROUNDS[scene.background]) >= MIN_CONTRAST


def test_relation_label_matches_the_object_positions(scenes):
    for scene in scenes:
        assert relation_of(scene) == scene.labels["relation"]


def test_clean_caption_is_fully_descriptive():
    scene = Scene(
        (
            SceneObject("star", "blue", "small", 0.15, 0.3),
            SceneObject("star", "blue", "small", 0.15, 0.7),
            SceneObject("square", "green", "small", 0.7, 0.5, hollow=True),
        ),
        "grey",
        "stripes",
        relation="left",
    )
    assert scene.labels["count"] == 2 and relation_of(scene) == "left"
    assert (
        clean_caption(scene)
        == "a photo of two small blue stars to the left of a hollow green square on a striped grey background"
    )


def test_clean_captions_name_shape_count_and_relation(scenes):
    for scene in scenes:
        caption = clean_caption(scene)
        main = scene.objects[0]
        phrase = f"{main.size} {main.colour} {main.shape}"
        assert caption.startswith(f"a photo of {COUNT_WORDS[len(scene.main)][0]} {phrase}")  # zero-shot's prompts
        assert says_count(caption, scene.labels["count"]) and says_relation(caption, scene), caption


def test_web_captions_vary_and_name_shape_count_and_relation(scenes):
    rng = random.Random(0)
    captions = []
    for scene in scenes[:500]:
        caption = web_caption(scene, rng)
        assert mentions(caption, scene.labels), caption
        assert says_count(caption, scene.labels["count"]), caption
        assert says_relation(caption, scene), caption
        captions.append(caption)
    assert len(set(captions)) > 450
    assert len({c.split()[0].lower() for c in captions}) > 10  # not one template


@pytest.mark.parametrize("size", [32, 64, 224])
def test_render_size_and_anti_aliased_edges(size):
    scene = Scene((SceneObject("circle", "red", "large", 0.5, 0.5),), "grey", "plain")
    img = render(scene, size)
    assert img.size == (size, size) and img.mode == "RGB"
    colours = {colour for _, colour in img.getcolors(size * size)}
    assert {COLOURS["red"], BACKGROUNDS["grey"]} <= colours
    assert len(colours) > 3  # edge pixels blend the two


def test_render_gives_the_pixels_of_one_whole_image_resize():
    """render() resizes only the box the objects reach; that must not change a pixel of what a plain full-canvas
    renderer draws, the hollow reference's inside included."""
    rng = random.Random(0)
    for size in (8, 33, 64):
        for _ in range(40):
            scene = random_scene(rng)
            background, offset = _background(scene.background, scene.texture, scene.variant, size)
            side = size * SUPERSAMPLE
            layer = Image.new("RGB", (side, side), BACKGROUNDS[scene.background])
            cover = Image.new("L", (side, side), 0)
            for obj in reversed(scene.objects):
                _draw(ImageDraw.Draw(layer), obj, side, COLOURS[obj.colour])
                _draw(ImageDraw.Draw(cover), obj, side, 255)
            colour = np.asarray(layer.resize((size, size), Image.BOX), dtype=np.int16)
            showing = 1 - np.asarray(cover.resize((size, size), Image.BOX))[..., None] / 255
            expected = np.clip(colour + np.rint(offset * showing), 0, 255).astype(np.uint8)
            assert np.array_equal(np.asarray(render(scene, size)), expected)


def test_sample_pairs_still_gives_clean_single_object_captions():
    pairs = sample_pairs(8, size=64, seed=0)
    assert len(pairs) == 8
    assert all(img.size == (64, 64) for img, _ in pairs)
    assert pairs[0][1] == "a photo of a small white cross on a navy background"
    assert all(" of a " not in c[len("a photo of a") :] for _, c in pairs)  # no reference, no relation
    assert [c for _, c in sample_pairs(8, size=64, seed=0)] == [c for _, c in pairs]


# The shard format


def test_tar_members_in_order_with_fixed_metadata(corpus):
    out, summary = corpus
    for split in ("train", "eval"):
        tars = sorted((out / split).glob("*.tar"))
        assert [p.name for p in tars] == [f"{i:05d}.tar" for i in range(summary.shards[split])]
        for shard, path in enumerate(tars):
            members = read_tar(path)
            keys = [f"{shard:05d}{i:04d}" for i in range(len(members) // 3)]
            assert [m.name for m, _ in members] == [f"{k}.{s}" for k in keys for s in ("jpg", "json", "txt")]
            for member, _ in members:
                assert (member.mtime, member.uid, member.gid, member.uname, member.gname) == (0, 0, 0, "", "")
                assert member.mode == 0o644 and member.isfile()
    assert summary.shards == {"train": 4, "eval": 1}


def test_json_has_img2dataset_fields_labels_and_sha256(corpus):
    out, _ = corpus
    for split in ("train", "eval"):
        for sample in read_split(out / split):
            meta = sample["json"]
            assert set(meta) == JSON_FIELDS | {"labels"}
            assert meta["sha256"] == hashlib.sha256(sample["jpg"]).hexdigest()
            assert meta["caption"] == sample["txt"]
            assert (meta["status"], meta["error_message"]) == ("success", None)
            assert meta["width"] == meta["height"] == meta["original_width"] == 64
            labels = meta["labels"]
            assert set(labels) == LABELS  # train samples carry the labels too: supervised ceilings train on them
            assert labels["shape"] in SHAPES and labels["colour"] in COLOURS and labels["size"] in SIZES
            assert labels["count"] in COUNTS and labels["relation"] in RELATIONS


def test_parquet_rows_match_the_tar(corpus):
    out, _ = corpus
    for split in ("train", "eval"):
        for path in sorted((out / split).glob("*.tar")):
            table = pq.read_table(path.with_suffix(".parquet"))
            assert table.schema.names == PARQUET_COLUMNS
            metas = [json.loads(data) for member, data in read_tar(path) if member.name.endswith(".json")]
            assert table.to_pylist() == [{k: v for k, v in m.items() if k != "labels"} for m in metas]


def test_stats_count_the_shards_samples(corpus):
    out, summary = corpus
    for split in ("train", "eval"):
        total = 0
        for path in sorted((out / split).glob("*.tar")):
            stats = json.loads(path.with_name(f"{path.stem}_stats.json").read_text())
            count = len(read_tar(path)) // 3
            assert set(stats) == STATS_FIELDS | {"status_dict"}
            assert (stats["count"], stats["successes"], stats["status_dict"]) == (count, count, {"success": count})
            assert stats["duration"] == stats["start_time"] == stats["end_time"] == 0
            total += count
        assert total == summary.samples[split]


def test_a_failed_shard_leaves_no_files(tmp_path):
    def samples():
        yield ShardSample(b"jpeg", "a caption", "synth://x", 8, 8)
        raise RuntimeError("renderer crashed")

    with pytest.raises(RuntimeError):
        write_shard(tmp_path, 0, samples())
    assert list(tmp_path.iterdir()) == []


# Splits and noise


def test_eval_is_clean_and_captions_name_the_labels(corpus):
    out, _ = corpus
    samples = read_split(out / "eval")
    assert len(samples) == 300
    for sample in samples:
        labels = sample["json"]["labels"]
        assert sample["txt"].startswith("a photo of ")
        assert labels["shape"] in sample["txt"] and labels["colour"] in sample["txt"]
        assert RELATION_WORDS[labels["relation"]][0] in sample["txt"] and says_count(sample["txt"], labels["count"])
        assert decodes(sample["jpg"])
    assert len({s["json"]["sha256"] for s in samples}) == len(samples)


def test_train_noise_rates_are_close_to_configured(corpus):
    out, summary = corpus
    samples = read_split(out / "train")
    n = len(samples)
    assert n == 2000
    assert abs(sum(summary.noise[k] for k in UNRELATED_KINDS) / n - 0.20) < 0.04
    assert all(summary.noise[k] > 0 for k in UNRELATED_KINDS)
    assert abs(summary.noise["truncated"] / n - 0.03) < 0.015
    # From the data alone: captions that fail to name the main shape and its colour are the unrelated ones,
    # plus the truncated ones that lost a name.
    non_empty = [s for s in samples if s["txt"]]
    unnamed = sum(not mentions(s["txt"], s["json"]["labels"]) for s in non_empty) / n
    assert 0.20 - 0.04 < unnamed < 0.20 + 0.03 + 0.04
    assert n - len(non_empty) == summary.noise["empty"] > 0
    seen = set()
    repeats = 0
    for s in samples:
        repeats += s["json"]["sha256"] in seen
        seen.add(s["json"]["sha256"])
    assert repeats == summary.noise["duplicate"] > 0
    assert summary.noise["corrupt"] == 0 and all(decodes(s["jpg"]) for s in samples)


def test_duplicates_repeat_an_earlier_samples_bytes_and_labels(tmp_path):
    summary = synthesize_corpus(tmp_path, 400, 0, noise=NoiseConfig(duplicate=0.2), progress=False)
    first: dict[str, dict] = {}
    duplicates = 0
    for s in read_split(tmp_path / "train"):
        digest = hashlib.sha256(s["jpg"]).hexdigest()
        if digest in first:
            duplicates += 1
            assert s["jpg"] == first[digest]["jpg"] and s["json"]["labels"] == first[digest]["json"]["labels"]
        first.setdefault(digest, s)
    assert duplicates == summary.noise["duplicate"] > 40


def test_corrupt_jpegs_only_when_asked_and_they_fail_to_decode(tmp_path):
    summary = synthesize_corpus(tmp_path, 300, 50, noise=NoiseConfig(corrupt=0.2, duplicate=0), progress=False)
    broken = [s for s in read_split(tmp_path / "train") if not decodes(s["jpg"])]
    assert len(broken) == summary.noise["corrupt"] > 30
    assert all(s["json"]["sha256"] == hashlib.sha256(s["jpg"]).hexdigest() for s in broken)
    assert all(decodes(s["jpg"]) for s in read_split(tmp_path / "eval"))


# Determinism


def test_same_seed_writes_byte_identical_shards_with_any_number_of_workers(tmp_path):
    synthesize_corpus(tmp_path / "a", 300, 100, shard_size=128, progress=False)
    synthesize_corpus(tmp_path / "b", 300, 100, shard_size=128, progress=False, workers=2)
    a, b = file_hashes(tmp_path / "a"), file_hashes(tmp_path / "b")
    assert len(a) == 3 * (3 + 1) and a == b


def test_different_seed_writes_different_shards(tmp_path):
    synthesize_corpus(tmp_path / "a", 100, 20, progress=False)
    synthesize_corpus(tmp_path / "b", 100, 20, seed=1, progress=False)
    a, b = file_hashes(tmp_path / "a"), file_hashes(tmp_path / "b")
    assert a.keys() == b.keys() and all(a[k] != b[k] for k in a if k.endswith(".tar"))


def test_rewriting_a_corpus_in_place_is_allowed_but_stale_shards_are_refused(tmp_path):
    synthesize_corpus(tmp_path, 30, 0, shard_size=10, progress=False)
    synthesize_corpus(tmp_path, 30, 0, shard_size=10, progress=False)
    with pytest.raises(UserError, match="00002.parquet"):
        synthesize_corpus(tmp_path, 15, 0, shard_size=10, progress=False)


# Bad arguments


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"train_samples": -1}, "train_samples"),
        ({"eval_samples": -5}, "eval_samples"),
        ({"shard_size": 0}, "shard_size"),
        ({"shard_size": 10_001}, "shard_size"),
        ({"image_size": 4}, "image_size"),
        ({"image_size": 4096}, "image_size"),
        ({"jpeg_quality": 0}, "jpeg_quality"),
        ({"workers": 0}, "workers"),
    ],
)
def test_bad_arguments_name_the_argument(tmp_path, kwargs, name):
    args = {"out_dir": tmp_path, "train_samples": 10, "eval_samples": 10, "progress": False} | kwargs
    with pytest.raises(UserError, match=name):
        synthesize_corpus(**args)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "rates, name",
    [({"unrelated": 1.5}, "unrelated"), ({"empty": -0.1}, "empty"), ({"unrelated": 0.6, "truncated": 0.5}, "sum")],
)
def test_bad_noise_rates_name_the_rate(rates, name):
    with pytest.raises(UserError, match=name):
        NoiseConfig(**rates)
