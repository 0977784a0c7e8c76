"""The synthetic web corpus: scenes and captions, the img2dataset shard format, noise rates, determinism."""

import hashlib
import io
import json
import random
import tarfile
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image, ImageDraw

from mug.data.corpus import UNRELATED_KINDS, NoiseConfig, synthesize_corpus
from mug.data.shards import ShardSample, write_shard
from mug.data.synth import (
    BACKGROUNDS,
    COLOUR_WORDS,
    COLOURS,
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


def test_vocabulary_is_large_enough():
    assert len(SHAPES) >= 8 and len(COLOURS) >= 8 and len(SIZES) >= 2
    assert set(TEXTURES) >= {"plain", "stripes", "checks", "dots", "gradient", "noise"}


def test_scene_labels_count_the_main_objects_shape_and_colour():
    rng = random.Random(0)
    scenes = [random_scene(rng) for _ in range(500)]
    assert {len(s.objects) for s in scenes} == {1, 2, 3}
    assert {s.labels["count"] for s in scenes} == {1, 2, 3}
    for scene in scenes:
        main = scene.objects[0]
        assert scene.labels["count"] == sum((o.shape, o.colour) == (main.shape, main.colour) for o in scene.objects)
        assert set(scene.labels) == {"shape", "colour", "size", "count", "background", "texture"}
        assert scene.labels["texture"] in TEXTURES and scene.labels["background"] in BACKGROUNDS


def test_clean_caption_is_fully_descriptive():
    scene = Scene(
        (
            SceneObject("star", "blue", "small", 0.3, 0.3),
            SceneObject("star", "blue", "small", 0.7, 0.3),
            SceneObject("square", "green", "large", 0.5, 0.7),
        ),
        "grey",
        "stripes",
    )
    assert scene.labels["count"] == 2
    assert (
        clean_caption(scene)
        == "a photo of two small blue stars next to a large green square on a striped grey background"
    )


def test_web_captions_vary_and_name_the_main_object():
    rng = random.Random(0)
    captions = []
    for _ in range(500):
        scene = random_scene(rng)
        caption = web_caption(scene, rng)
        assert mentions(caption, scene.labels), caption
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
    """render() resizes only the box the objects reach; that must not change a pixel, since sample_pairs (and so
    the demo) relies on the same images as the plain full-canvas renderer it replaced."""
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
            colour = np.asarray(layer.resize((size, size), Image.LANCZOS), dtype=np.int16)
            showing = 1 - np.asarray(cover.resize((size, size), Image.LANCZOS))[..., None] / 255
            expected = np.clip(colour + np.rint(offset * showing), 0, 255).astype(np.uint8)
            assert np.array_equal(np.asarray(render(scene, size)), expected)


def test_sample_pairs_still_gives_clean_single_object_captions():
    pairs = sample_pairs(8, size=64, seed=0)
    assert len(pairs) == 8
    assert all(img.size == (64, 64) for img, _ in pairs)
    assert pairs[0][1] == "a photo of a small white hexagon on a navy background"  # the README's demo caption
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
            assert labels["shape"] in SHAPES and labels["colour"] in COLOURS and labels["size"] in SIZES


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
