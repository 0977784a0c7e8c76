"""The data-validation gate on shards written here in img2dataset's layout: a clean corpus passes, and each kind
of damage fails the gate through the check that names it."""

import io
import json
import random
import tarfile

import numpy as np
import pytest
from PIL import Image

from mug.commands.data import gate_exit_code
from mug.data.gate.checks import RULES
from mug.data.gate.report import write_report
from mug.data.gate.scan import scan_shard
from mug.data.gate.validate import load_thresholds, validate_shards
from mug.errors import UserError
from mug.tokenizer import CaptionTokenizer

N = 100
WORDS = {
    "size": ("small", "large", "tiny"),
    "colour": ("red", "green", "blue", "yellow"),
    "shape": ("circle", "square", "star", "ring"),
    "background": ("grey", "beige", "teal"),
}


def jpeg(seed: int, size: int = 64) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "JPEG", quality=80)
    return buf.getvalue()


def clean_samples(n: int = N, shard: int = 0) -> list[dict]:
    rng = random.Random(shard)
    samples = []
    for i in range(n):
        size, colour, shape, background = (rng.choice(words) for words in WORDS.values())
        caption = f"a photo of a {size} {colour} {shape} on a {background} background"
        samples.append(
            {"key": f"{shard:05d}{i:04d}", "jpg": jpeg(shard * 10_000 + i), "txt": caption, "status": "success"}
        )
    return samples


def write_shard(path, samples: list[dict]):
    with tarfile.open(path, "w") as tar:
        for sample in samples:
            meta = {"key": sample["key"], "caption": sample["txt"], "status": sample["status"], "error_message": None}
            for ext, data in (
                ("jpg", sample["jpg"]),
                ("txt", sample["txt"].encode()),
                ("json", json.dumps(meta).encode()),
            ):
                info = tarfile.TarInfo(f"{sample['key']}.{ext}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return path


def corrupt(s, i):
    s["jpg"] = s["jpg"][: len(s["jpg"]) // 2] if i % 10 == 0 else s["jpg"]  # 10% truncated JPEGs


def empty(s, i):
    s["txt"] = "" if i % 25 == 0 else s["txt"]  # 4%: over the 2% rate, inside caption_chars' mostly 0.95


def duplicate(s, i):
    s["jpg"] = jpeg(0) if i % 10 == 0 else s["jpg"]  # 9 repeats of sample 0's image


def small(s, i):
    s["jpg"] = jpeg(i, size=32) if i % 20 == 0 else s["jpg"]


def filename(s, i):
    s["txt"] = f"IMG_{i:04d}.jpg" if i % 5 == 0 else s["txt"]  # 20%


def failed_status(s, i):
    s["status"] = "failed_to_download" if i % 20 == 0 else s["status"]


def long_caption(s, i):
    s["txt"] = "a red " * 40 if i % 10 == 0 else s["txt"]  # 80 word pieces in 240 characters


def corpus(tmp_path, damage=None, shards: int = 1):
    paths = []
    for shard in range(shards):
        samples = clean_samples(shard=shard)
        for i, sample in enumerate(samples):
            if damage is not None:
                damage(sample, i)
        paths.append(write_shard(tmp_path / f"{shard:05d}.tar", samples))
    return paths


@pytest.fixture(scope="module")
def caption_tokenizer():
    return CaptionTokenizer.train([s["txt"] for s in clean_samples()], vocab_size=100, min_frequency=1)


def test_clean_corpus_passes_in_parallel_and_writes_reports(tmp_path, caption_tokenizer):
    (tmp_path / "shards").mkdir()
    paths = corpus(tmp_path / "shards", shards=2)
    result = validate_shards(paths, tokenizer=caption_tokenizer, workers=2)
    write_report(result, tmp_path / "report")
    assert result.passed, result.failures()
    assert result.rows == 2 * N and result.workers == 2 and result.samples_per_s > 0
    assert [check.name for check in result.checks] == list(load_thresholds())
    assert not any(check.skipped for check in result.checks)
    tokens = next(check for check in result.checks if check.name == "caption_tokens")
    assert tokens.expectation == "expect_column_values_to_be_between" and tokens.observed == 1.0
    table = result.table
    assert table["key"].iloc[N] == "000010000" and table["shard"].iloc[N].endswith("00001.tar")
    assert (table["width"] == 64).all() and (table["min_side"] == 64).all() and (table["status"] == "success").all()
    assert not table["duplicate"].any() and table["decodes"].all()

    report = json.loads((tmp_path / "report" / "validation.json").read_text())
    assert report["passed"] and report["counts"]["samples"] == 2 * N
    assert {c["name"]: c["status"] for c in report["checks"]} == {name: "passed" for name in load_thresholds()}
    assert len(report["shards"]) == 2 and report["timing"]["scan_s"] > 0
    page = (tmp_path / "report" / "validation.html").read_text()
    assert "Data gate PASSED" in page and "duplicate_rate" in page and page.count("<svg") == 4
    assert not list((tmp_path / "report").glob(".*"))  # no temp files left behind


@pytest.mark.parametrize(
    ("damage", "check"),
    [
        (corrupt, "decode_failure_rate"),
        (empty, "empty_caption_rate"),
        (duplicate, "duplicate_rate"),
        (small, "min_side"),
        (filename, "filename_caption_rate"),
        (failed_status, "status_success_rate"),
        (long_caption, "caption_tokens"),
    ],
)
def test_damaged_corpus_fails_on_the_check_that_names_it(tmp_path, caption_tokenizer, damage, check):
    result = validate_shards(corpus(tmp_path, damage), tokenizer=caption_tokenizer, workers=1)
    assert not result.passed
    assert [c.name for c in result.checks if not c.passed] == [check]
    (line,) = result.failures()
    assert line.startswith(f"{check}: observed ")
    failed = next(c for c in result.checks if c.name == check)
    assert failed.examples and all(e["shard"] == "00000.tar" for e in failed.examples)


def test_failure_lines_say_how_the_threshold_was_missed(tmp_path):
    result = validate_shards(corpus(tmp_path, duplicate), workers=1)
    assert result.failures() == ["duplicate_rate: observed 0.09 > max 0.05"]
    result = validate_shards(corpus(tmp_path, small), workers=1)
    assert result.failures() == ["min_side: observed 32 < min 64"]
    assert validate_shards(corpus(tmp_path, small), min_side=32, workers=1).passed


def test_corrupt_images_are_reported_with_their_error(tmp_path):
    result = validate_shards(corpus(tmp_path, corrupt), workers=1)
    assert int((~result.table["decodes"]).sum()) == 10
    assert result.table["width"].isna().sum() == 10
    check = next(c for c in result.checks if c.name == "decode_failure_rate")
    assert check.observed == pytest.approx(0.1) and "truncated" in check.examples[0]["value"]


def test_non_tar_shard_fails_unreadable_shards(tmp_path):
    paths = corpus(tmp_path)
    bad = tmp_path / "00001.tar"
    bad.write_text("this is not a tar file\n")
    result = validate_shards(tmp_path, workers=2)
    assert [c.name for c in result.checks if not c.passed] == ["unreadable_shards"]
    assert result.rows == N and [s.path for s in result.shards] == [str(paths[0]), str(bad)]
    (line,) = result.failures()
    assert line.startswith("unreadable_shards: observed 1 > max 0 (00001.tar: TarError: not a tar file")


def test_truncated_tar_keeps_whole_samples_and_records_the_error(tmp_path):
    (path,) = corpus(tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    scan = scan_shard(path)
    assert scan.error is not None and 0 < scan.samples < N
    assert all(scan.columns["decodes"])  # the sample cut in half is dropped, not counted as a bad image


def test_gate_exit_codes(tmp_path, capsys):
    clean = tmp_path / "clean"
    clean.mkdir()
    corpus(clean)
    result = validate_shards(clean, workers=1)
    write_report(result, tmp_path / "out")
    assert gate_exit_code(result, tmp_path / "out") == 0
    out, err = capsys.readouterr()
    assert "data gate passed" in out and "skipped caption_tokens: no tokenizer given" in err

    broken = tmp_path / "broken"
    broken.mkdir()
    corpus(broken, filename)
    result = validate_shards(broken / "{00000..00000}.tar", workers=1)
    write_report(result, tmp_path / "out")
    assert gate_exit_code(result, tmp_path / "out") == 1
    err = capsys.readouterr().err
    assert "data gate failed 1 of" in err and "  filename_caption_rate: observed 0.2 > max 0.15" in err
    report = json.loads((tmp_path / "out" / "validation.json").read_text())
    assert not report["passed"]
    statuses = {c["name"]: c["status"] for c in report["checks"]}
    assert statuses["filename_caption_rate"] == "failed" and statuses["caption_tokens"] == "skipped"
    page = (tmp_path / "out" / "validation.html").read_text()
    assert "Data gate FAILED" in page and 'class="failed"' in page and "IMG_0000.jpg" in page


def test_no_samples_fails_the_gate(tmp_path):
    path = write_shard(tmp_path / "00000.tar", [])
    result = validate_shards(path, workers=1)
    assert not result.passed and result.rows == 0
    assert "samples: observed 0 < min 1" in result.failures()


def test_missing_shard_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="00007.tar does not exist"):
        validate_shards(tmp_path / "00007.tar")
    with pytest.raises(UserError, match="holds no .tar files"):
        validate_shards(tmp_path)


def test_thresholds_from_yaml_and_their_errors(tmp_path):
    assert set(load_thresholds()) <= set(RULES)  # the shipped default is found as package data
    assert load_thresholds(min_side=224)["min_side"] == {"min": 224}
    path = tmp_path / "gate.yaml"
    path.write_text("duplicate_rate: {max: 0.1}\n")
    assert load_thresholds(path) == {"duplicate_rate": {"max": 0.1}}

    path.write_text("duplicate_rate: {max: 0.1}\nblurry_rate: {max: 0.1}\n")
    with pytest.raises(UserError, match=r"thresholds.blurry_rate is not a gate check; known: samples, unreadable_sh"):
        load_thresholds(path)
    for bad, message in (
        ({"duplicate_rate": 0.05}, "thresholds.duplicate_rate must be a mapping of min, max, got 0.05"),
        ({"duplicate_rate": {"max": "lots"}}, "thresholds.duplicate_rate.max must be a finite number, got 'lots'"),
        ({"duplicate_rate": {"max": 2}}, r"thresholds.duplicate_rate.max must be in \[0, 1\], got 2"),
        ({"caption_chars": {"min": 10, "max": 5}}, r"thresholds.caption_chars.min must be at most its max \(5\)"),
        ({"min_side": {"min": 64, "mostly": 0.9}}, "thresholds.min_side.mostly is not a bound of this check"),
    ):
        with pytest.raises(UserError, match=f"^{message}"):
            load_thresholds(bad)
    assert load_thresholds({"samples": {"min": 10.0}}) == {"samples": {"min": 10.0}}  # a pipeline's doubles pass


def test_tokenizer_file_enables_the_token_check(tmp_path, caption_tokenizer):
    caption_tokenizer.save(tmp_path / "tokenizer.json")
    result = validate_shards(corpus(tmp_path, long_caption), tokenizer=tmp_path / "tokenizer.json", workers=1)
    assert result.failures() == ["caption_tokens: observed 0.9 of values in [2, 77] < mostly 0.95"]
    assert (result.table["caption_tokens"] == 80).sum() == 10
