"""The streaming loader on tiny img2dataset-style shards written here, broken ones included."""

import dataclasses
import io
import json
import logging
import random
import re
import tarfile
import tracemalloc
import warnings
from collections import Counter

import numpy as np
import pytest
import torch
import torchvision.transforms.v2.functional as TF
from PIL import Image, ImageDraw
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

from mug.data.loading.augment import (
    Box,
    adjust_hue,
    channels_last,
    gaussian_blur,
    hwc,
    normalize,
    resize_into,
    resized_crop,
)
from mug.data.loading.decode import BadImage, decode
from mug.data.loading.loader import LoaderConfig, make_loader
from mug.data.loading.skips import REASONS
from mug.errors import UserError
from mug.image import to_tensor
from mug.tokenizer import CaptionTokenizer

SIZE = 32
WORDS = ["red", "green", "blue", "circle", "square", "on", "a", "grey", "background", "small", "large"]


def jpeg(rng: random.Random, size: int = SIZE) -> bytes:
    """A plain background with a random rectangle: distinct crops look different."""
    img = Image.new("RGB", (size, size), tuple(rng.randrange(256) for _ in range(3)))
    x, y = rng.randrange(size // 2), rng.randrange(size // 2)
    ImageDraw.Draw(img).rectangle(
        (x, y, x + size // 2, y + size // 3), fill=tuple(rng.randrange(256) for _ in range(3))
    )
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=90)
    return buf.getvalue()


def sample(shard: int, index: int, rng: random.Random, **override) -> tuple[str, dict[str, bytes | None]]:
    """One sample as img2dataset writes it: KEY.jpg, KEY.txt, KEY.json; an override of None drops the member."""
    key = f"{shard:05d}{index:04d}"
    caption = " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 8)))
    meta = {"key": key, "caption": caption, "status": "success", "labels": {"shape": "circle", "index": index}}
    members = {"jpg": jpeg(rng), "txt": caption.encode(), "json": json.dumps(meta).encode()}
    members.update(override)
    return key, {ext: data for ext, data in members.items() if data is not None}


def tar_bytes(samples: list[tuple[str, dict[str, bytes]]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for key, members in samples:
            for ext, data in members.items():
                info = tarfile.TarInfo(f"{key}.{ext}")
                info.size, info.mtime, info.uid, info.gid, info.uname, info.gname = len(data), 0, 0, 0, "", ""
                tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def write_good(folder, shards: range, per_shard: int, seed: int = 0) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    keys = []
    for shard in shards:
        samples = [sample(shard, i, rng) for i in range(per_shard)]
        (folder / f"{shard:05d}.tar").write_bytes(tar_bytes(samples))
        keys += [key for key, _ in samples]
    return keys


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """good/: 4 clean shards of 6; mixed/: 2 clean shards plus every kind of damage, and the keys to expect."""
    root = tmp_path_factory.mktemp("shards")
    good = write_good(root / "good", range(4), 6)
    mixed = root / "mixed"
    expected = write_good(mixed, range(2), 5, seed=1)
    rng = random.Random(2)
    damaged = [
        sample(2, 0, rng),
        sample(2, 1, rng, jpg=b"\xff\xd8\xff\xe0 this is no jpeg"),
        sample(2, 2, rng, txt=None),
        sample(2, 3, rng, jpg=None),
        sample(2, 4, rng),
    ]
    (mixed / "00002.tar").write_bytes(tar_bytes(damaged))
    expected += ["000020000", "000020004"]
    truncated = [sample(3, i, rng) for i in range(4)]
    data = tar_bytes(truncated)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        cut = next(m for m in tar.getmembers() if m.name == "000030002.jpg")
    (mixed / "00003.tar").write_bytes(data[: cut.offset_data + cut.size // 2])  # dies inside sample 2's image
    expected += ["000030000", "000030001"]
    (mixed / "00004.tar").write_bytes(b"this is not a tar file\n" * 50)
    (mixed / "00005.tar").write_bytes(tar_bytes([]))  # every download of the shard failed: no images at all
    captions = [m["txt"].decode() for _, m in damaged + truncated if "txt" in m]
    return {"root": root, "good": good, "mixed": mixed, "mixed_keys": expected, "captions": captions}


@pytest.fixture(scope="module")
def tok(corpus):
    captions = [" ".join(WORDS)] + corpus["captions"]
    return CaptionTokenizer.train(captions, vocab_size=100, min_frequency=1)


def config(urls, **kw) -> LoaderConfig:
    kw = {"batch_size": 4, "image_size": SIZE, "context_length": 12, **kw}
    return LoaderConfig(urls=urls, **kw)


def keys_of(loader) -> list[str]:
    return [key for batch in loader for key in batch["key"]]


@pytest.mark.parametrize("inputs", [("image",), ("image", "tokens"), ("image", "image2")])
def test_batches_hold_exactly_the_objective_inputs(corpus, tok, inputs):
    loader = make_loader(config(str(corpus["root"] / "good"), inputs=inputs, image_size=24), tok, 0, 1)
    batches = list(loader)
    assert len(batches) == 24 // 4  # training drops no sample here: 24 is a multiple of the batch
    for batch in batches:
        assert set(batch) == {*inputs, "key"}
        assert all(isinstance(k, str) for k in batch["key"]) and len(batch["key"]) == 4
        for name in ("image", "image2"):
            if name in inputs:
                assert batch[name].shape == (4, 3, 24, 24) and batch[name].dtype == torch.float32
                assert batch[name].is_contiguous(memory_format=torch.channels_last)  # as decoded: no transpose
                assert -2.2 < batch[name].min() and batch[name].max() < 2.7  # ImageNet-normalised [0, 1]
        if "tokens" in inputs:
            tokens = batch["tokens"]
            assert tokens.shape == (4, 12) and tokens.dtype == torch.long
            assert (tokens[:, 0] == tok.bos_id).all() and (tokens == tok.eos_id).sum(1).eq(1).all()
    if "image2" in inputs:  # SimCLR's two views of one image differ
        assert all(not torch.allclose(b["image"][i], b["image2"][i]) for b in batches for i in range(4))


def test_eval_matches_the_model_preprocessing_and_carries_labels(corpus):
    loader = make_loader(config(str(corpus["root"] / "good" / "00000.tar"), train=False), None, 0, 1)
    batch = next(iter(loader))
    assert batch["labels"] == [{"shape": "circle", "index": i} for i in range(4)]
    with tarfile.open(corpus["root"] / "good" / "00000.tar") as tar:
        expected = [to_tensor(Image.open(tar.extractfile(f"{k}.jpg")).convert("RGB"), SIZE) for k in batch["key"]]
    torch.testing.assert_close(batch["image"], torch.stack(expected), atol=0.05, rtol=0)
    uint8 = torch.full((1, 3, 2, 2), 255, dtype=torch.uint8)
    torch.testing.assert_close(normalize(uint8)[0, :, 0, 0], torch.tensor([2.2489, 2.4286, 2.64]), atol=1e-3, rtol=0)
    raw = next(iter(make_loader(config(str(corpus["root"] / "good" / "00000.tar"), train=False, normalize=False))))
    assert raw["image"].dtype == torch.uint8  # for normalising on the GPU
    torch.testing.assert_close(normalize(raw["image"]), batch["image"])


@pytest.mark.parametrize("workers", [0, 2])
def test_damage_is_skipped_counted_and_every_good_sample_delivered(corpus, tok, workers, caplog):
    cfg = config(str(corpus["mixed"]), inputs=("image", "tokens"), train=False, num_workers=workers)
    loader = make_loader(cfg, tok, 0, 1)
    with caplog.at_level(logging.INFO, logger="mug.data"):
        keys = keys_of(loader)
    assert sorted(keys) == sorted(corpus["mixed_keys"])
    assert loader.stats.counts == {
        "bad_image": 1,
        "missing_caption": 1,
        "missing_image": 1,
        "truncated_shard": 1,
        "unreadable_shard": 1,
        "empty_shard": 1,
    }
    assert (loader.stats.samples, loader.stats.skipped) == (len(keys), 6) and set(REASONS) >= set(loader.stats.counts)
    assert "epoch 0" in caplog.text and "bad_image" in caplog.text


def test_failing_pipe_commands_are_counted_as_unreadable_shards(corpus):
    good = corpus["root"] / "good"
    urls = [f"pipe:cat {good}/00000.tar", "pipe:false", f"pipe:cat {good}/missing.tar 2>/dev/null"]
    loader = make_loader(config(urls, train=False), None, 0, 1)
    assert sorted(keys_of(loader)) == sorted(corpus["good"][:6])
    assert loader.stats.counts == {"unreadable_shard": 2}


def test_captions_are_not_required_when_the_objective_reads_none(corpus):
    loader = make_loader(config(str(corpus["mixed"]), train=False), None, 0, 1)
    assert "000020002" in keys_of(loader)
    assert "missing_caption" not in loader.stats.counts


def test_brace_patterns_folders_lists_and_pipes_name_the_same_shards(corpus):
    good = corpus["root"] / "good"
    want = sorted(corpus["good"])
    for urls in (
        f"{good}/{{00000..00003}}.tar",
        good,  # a Path
        f"{good}/",
        [str(good / "00000.tar"), f"{good}/{{00001..00003}}.tar"],
        f"pipe:cat {good}/0000{{0..3}}.tar",
    ):
        assert sorted(keys_of(make_loader(config(urls, train=False), None, 0, 1))) == want, urls


def test_missing_shards_raise_a_user_error_naming_them(corpus, tmp_path):
    good = corpus["root"] / "good"
    cases = {
        str(tmp_path / "nope.tar"): "nope.tar",
        f"{good}/{{00003..00005}}.tar": "00004.tar",
        f"{tmp_path}/{{0..3}}.tar": "0.tar",
        str(tmp_path): str(tmp_path),  # a folder without shards
        "s3://bucket/0.tar": "pipe:aws s3 cp s3://bucket/0.tar -",
    }
    for urls, named in cases.items():
        with pytest.raises(UserError, match=re.escape(named)):
            make_loader(config(urls), None, 0, 1)


def test_a_resampled_source_without_one_readable_shard_stops_with_a_user_error(tmp_path):
    (tmp_path / "00000.tar").write_bytes(b"<html>403 Forbidden</html>")
    loader = make_loader(config(str(tmp_path), epoch_samples=8), None, 0, 2)
    with pytest.raises(UserError, match="unreadable or empty"):
        next(iter(loader))


def test_ranks_read_disjoint_parts_that_together_are_complete(corpus):
    urls = str(corpus["root"] / "good")
    parts = [keys_of(make_loader(config(urls, train=False, num_workers=w), None, r, 2)) for r, w in ((0, 0), (1, 2))]
    assert parts[0] and parts[1] and not set(parts[0]) & set(parts[1])
    assert sorted(parts[0] + parts[1]) == sorted(corpus["good"])


@pytest.mark.parametrize("workers", [0, 2])
def test_resampled_epochs_give_every_rank_the_same_number_of_batches(corpus, workers):
    for rank in (0, 1):  # 50 samples over 2 ranks at 4 a batch: 7 batches each
        cfg = config(str(corpus["mixed"]), epoch_samples=50, num_workers=workers, shuffle_buffer=10)
        loader = make_loader(cfg, None, rank, 2)
        assert loader.dataset.resampled and loader.batches_per_epoch == 7
        for _ in range(2):
            batches = list(loader)
            assert [len(b["key"]) for b in batches] == [4] * 7
            assert loader.stats.batches == 7 and loader.stats.samples == 28


def test_mixed_sources_follow_their_weights(corpus, tmp_path):
    other = write_good(tmp_path / "other", range(10, 12), 6)
    sources = [(str(corpus["root"] / "good"), 0.9), [str(tmp_path / "other"), 0.1]]  # lists, as from YAML
    cfg = config(sources, resampled=True)
    cfg.epoch_samples, cfg.batch_size, cfg.image_size = 800, 50, 8
    keys = keys_of(make_loader(cfg, None, 0, 1))
    share = Counter(k in set(other) for k in keys)
    assert len(keys) == 800 and 0.06 < share[True] / 800 < 0.14


def test_the_same_seed_gives_the_same_batches(corpus, tok):
    def run(seed: int) -> list[dict]:
        cfg = config(str(corpus["root"] / "good"), inputs=("image", "image2", "tokens"), seed=seed, shuffle_buffer=8)
        return list(make_loader(cfg, tok, 0, 1))

    first, again, other = run(0), run(0), run(1)
    assert [b["key"] for b in first] == [b["key"] for b in again]
    for a, b in zip(first, again, strict=True):
        for name in ("image", "image2", "tokens"):
            assert torch.equal(a[name], b[name])
    assert [b["key"] for b in first] != [b["key"] for b in other]


def test_crop_scale_and_flip_narrow_the_training_augmentation(corpus):
    """Whole-image crops without flips deliver the eval images; with flips, each is the eval image or its mirror,
    and both occur. Settings that are not area fractions are named."""
    urls = str(corpus["root"] / "good")

    def images(**kw) -> dict[str, torch.Tensor]:
        loader = make_loader(config(urls, shuffle_buffer=0, normalize=False, **kw), None, 0, 1)
        return {key: image for batch in loader for key, image in zip(batch["key"], batch["image"], strict=True)}

    plain = images(train=False)
    assert images(crop_scale=(1.0, 1.0), flip=False).keys() == plain.keys()
    assert all(torch.equal(image, plain[key]) for key, image in images(crop_scale=(1.0, 1.0), flip=False).items())
    flipped = Counter(
        "same" if torch.equal(image, plain[key]) else "mirror" if torch.equal(image, plain[key].flip(-1)) else "other"
        for key, image in images(crop_scale=(1.0, 1.0), flip=True).items()
    )
    assert flipped["same"] > 10 and flipped["mirror"] > 10 and flipped["other"] == 0
    for bad in [(0.0, 1.0), (0.9, 0.5), (0.5, 1.5), (0.5,)]:
        with pytest.raises(UserError, match=re.escape("loader.crop_scale")):
            config(urls, crop_scale=bad).validate()


@pytest.mark.parametrize("floats", [False, True])
def test_workers_reuse_batch_memory_only_once_the_batch_is_let_go(corpus, tok, floats):
    """A worker's shared batch buffers are reused after the trainer drops a batch, never while it holds one."""
    cfg = config(str(corpus["root"] / "good"), inputs=("image", "tokens"), train=False, batch_size=2, normalize=floats)
    expected = list(make_loader(cfg, tok, 0, 1))  # in-process: fresh tensors, nothing reused
    held_loader = make_loader(dataclasses.replace(cfg, num_workers=1), tok, 0, 1)
    held = list(held_loader)  # every batch kept: no buffer may be written twice
    assert held_loader.stats.reused_buffers == 0 and len(held) == 12
    for a, b in zip(expected, held, strict=True):
        assert a["key"] == b["key"] and torch.equal(a["image"], b["image"]) and torch.equal(a["tokens"], b["tokens"])
    dropping = make_loader(dataclasses.replace(cfg, num_workers=1), tok, 0, 1)
    views = []
    for a, batch in zip(expected, dropping, strict=True):
        assert torch.equal(a["image"], batch["image"]) and torch.equal(a["tokens"], batch["tokens"])
        views = [batch["image"][0].numpy()] if len(views) < 1 else views  # a numpy view keeps the first batch's set
    assert dropping.stats.reused_buffers > 0  # how many depends on how far the worker runs ahead (5-11 seen)
    assert np.array_equal(views[0], expected[0]["image"][0].numpy())  # still intact after 11 more batches


def test_blur_and_hue_match_torchvision():
    image = torch.randint(0, 256, (3, 40, 36), dtype=torch.uint8)
    for kernel, sigma in ((3, 0.1), (5, 1.0), (23, 2.0)):
        diff = gaussian_blur(image, kernel, sigma).int() - TF.gaussian_blur(image, [kernel] * 2, [sigma] * 2).int()
        assert diff.abs().max() <= 1  # rounding
    for factor in (-0.5, -0.1, 0.03, 0.1, 0.5):
        diff = (adjust_hue(image, factor).int() - TF.adjust_hue(image, factor).int()).abs()
        assert diff.max() <= 1 and diff.float().mean() < 0.1


def photo(width: int, height: int) -> Image.Image:
    """Smooth colour gradients with a few shapes: resampling errors show, noise does not drown them."""
    image = Image.linear_gradient("L").resize((width, height)).convert("RGB")
    draw = ImageDraw.Draw(image)
    draw.ellipse((width // 5, height // 4, width // 2, height // 2), fill=(200, 40, 40))
    draw.rectangle((width // 2, height // 2, width - 5, height - 8), fill=(30, 160, 220))
    return image


def encoded(image: Image.Image, fmt: str, **options) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **options)
    return buf.getvalue()


def test_decode_gives_pils_pixels_for_every_flavour_and_names_broken_bytes():
    image = photo(70, 50)
    flavours = {
        "jpeg 4:2:0": encoded(image, "JPEG", quality=95),
        "jpeg 4:4:4": encoded(image, "JPEG", quality=90, subsampling=0),
        "progressive": encoded(image, "JPEG", progressive=True),
        "grayscale": encoded(image.convert("L"), "JPEG"),
        "cmyk": encoded(image.convert("CMYK"), "JPEG"),  # libjpeg-turbo converts it; PIL too
        "png": encoded(image, "PNG"),
        "webp": encoded(image, "WEBP", lossless=True),
    }
    for name, data in flavours.items():
        pixels = decode(data)
        reference = np.asarray(Image.open(io.BytesIO(data)).convert("RGB")).astype(int)
        assert pixels.shape == (50, 70, 3) and pixels.dtype == np.uint8, name
        assert np.abs(pixels.astype(int) - reference).max() <= 1, name  # CMYK: rounding
    jpeg_bytes = flavours["jpeg 4:2:0"]
    for broken in (jpeg_bytes[: len(jpeg_bytes) // 2], b"\xff\xd8" + b"\0" * 64, b"not an image"):
        with pytest.raises(BadImage, match="OSError|UnidentifiedImageError|SyntaxError"):
            decode(broken)
    bomb = bytearray(jpeg_bytes)  # a header claiming 30,000 x 30,000 px: refused from the header, not decoded
    start = bomb.index(b"\xff\xc0") + 5  # SOF0: marker, length, precision, then height and width
    bomb[start : start + 4] = (30000).to_bytes(2, "big") * 2
    tracemalloc.start()
    try:
        with pytest.raises(BadImage, match="DecompressionBombError"):
            decode(bytes(bomb))
        assert tracemalloc.get_traced_memory()[1] < 100 << 20  # decoding it would take 2.6 GB first
    finally:
        tracemalloc.stop()


def test_decode_of_damaged_files_gives_pixels_or_bad_image_never_another_error():
    """Mutated bytes of every format PIL reads on the web: the loader must count them, not crash on them."""
    rng = random.Random(0)
    originals = [encoded(photo(20, 16), fmt) for fmt in ("JPEG", "PNG", "GIF", "BMP", "TIFF", "WEBP", "ICO")]
    outcomes = Counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PIL warns about the damage it reads past
        for _ in range(700):
            data = bytearray(rng.choice(originals))
            for _ in range(rng.randint(1, 4)):
                data[rng.randrange(len(data))] = rng.randrange(256)
            try:
                pixels = decode(bytes(data))
                assert pixels.ndim == 3 and pixels.shape[2] == 3 and pixels.dtype == np.uint8
                outcomes["decoded"] += 1
            except BadImage:
                outcomes["bad"] += 1
    assert outcomes["decoded"] > 100 and outcomes["bad"] > 100  # both kinds of damage occurred


@pytest.mark.parametrize(("box", "size"), [((10, 6, 60, 50), 64), ((0, 0, 200, 180), 64), ((3, 5, 64, 64), 64)])
def test_resized_crop_matches_pil_bicubic_and_writes_into_the_batch_row(box, size):
    image = photo(200, 180)
    pixels = torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1)  # channels-last, as decoded
    left, top, width, height = box
    reference = np.asarray(image.resize((size, size), Image.BICUBIC, box=(left, top, left + width, top + height)))
    batch = channels_last((2, 3, size, size), torch.uint8)
    resize_into(hwc(pixels), Box(*box), hwc(batch)[1])  # enlarging: bicubic; shrinking 3x: area average
    assert np.abs(batch[1].permute(1, 2, 0).numpy().astype(int) - reference).mean() < 2.5  # written in place
    flipped = resized_crop(pixels.contiguous(), Box(*box), size, flip=True)  # NCHW memory works too
    assert torch.equal(flipped, batch[1].flip(-1)) and flipped[None].is_contiguous(memory_format=torch.channels_last)


def test_channels_last_normalisation_matches_the_plain_formula():
    images = torch.randint(0, 256, (4, 3, 20, 12), dtype=torch.uint8)
    expected = (images.float() / 255 - torch.tensor(IMAGENET_DEFAULT_MEAN).view(1, 3, 1, 1)) / torch.tensor(
        IMAGENET_DEFAULT_STD
    ).view(1, 3, 1, 1)
    for layout in (torch.contiguous_format, torch.channels_last):
        out = normalize(images.contiguous(memory_format=layout))
        torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)
        assert out.is_contiguous(memory_format=torch.channels_last)
    nchw = normalize(images, out=torch.empty(4, 3, 20, 12))  # a plain out keeps its layout
    torch.testing.assert_close(nchw, expected, atol=1e-5, rtol=0)
