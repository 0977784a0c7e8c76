"""End to end on the tiny preset: MUG memorises a few synthetic pairs, then the demo captions them."""

import subprocess
import sys

import pytest
from PIL import Image

from mug.checkpoint import load_checkpoint
from mug.cli import main
from mug.demo import build_demo_checkpoint, caption_file
from mug.generation import GenerationConfig

pytestmark = pytest.mark.slow  # make test-fast skips this module


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    build_demo_checkpoint(out, pairs=8, steps=300, seed=0)
    return out


def test_both_mug_losses_fall_well_below_their_start(demo_dir):
    meta = load_checkpoint(demo_dir / "checkpoint")[2]
    first, last = meta["initial_losses"], meta["final_losses"]
    assert last["loss_rec"] < 0.25 * first["loss_rec"]
    assert last["loss_cap"] < 0.05 * first["loss_cap"]


@pytest.mark.parametrize("strategy", ["greedy", "beam"])
def test_demo_reproduces_training_captions(demo_dir, strategy):
    hits = 0
    for i in range(8):
        result = caption_file(
            demo_dir / "checkpoint",
            demo_dir / "images" / f"{i}.png",
            "a photo of a",
            0.75,
            GenerationConfig(strategy=strategy),
        )
        hits += result.caption == (demo_dir / "images" / f"{i}.txt").read_text().strip()
    assert hits >= 7


def test_caption_command_prints_caption_and_writes_strip(demo_dir, tmp_path, capsys):
    strip = tmp_path / "strip.png"
    code = main(["caption", str(demo_dir / "checkpoint"), str(demo_dir / "images" / "0.png"), "--strip", str(strip)])
    assert code == 0
    assert capsys.readouterr().out.strip() == (demo_dir / "images" / "0.txt").read_text().strip()
    with Image.open(strip) as img:
        assert img.size == (3 * 64 + 8, 64)


@pytest.mark.parametrize(
    "image, message",
    [("missing.png", "missing.png does not exist"), ("notes.txt", "notes.txt is not a readable image")],
)
def test_bad_image_is_one_line_and_exit_code_2(demo_dir, tmp_path, image, message):
    (tmp_path / "notes.txt").write_text("not an image")
    proc = subprocess.run(
        [sys.executable, "-m", "mug.cli", "caption", str(demo_dir / "checkpoint"), str(tmp_path / image)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
