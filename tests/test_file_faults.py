"""Files that cannot be read or written. Every file of a training checkpoint, damaged every way a copy, a crash or a
mix-up damages it: the loaders, `mug evaluate` and `mug pretrain --resume` name the file and what is wrong in one line
(exit 2), and unpickle nothing. A place that takes no files: one line naming the path and the cause.

Tests run as root, where permissions stop no write: the places here fail for anyone (a file where a folder must be)."""

import functools
import os
import pickle
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mug.checkpoint import load_checkpoint
from mug.cli import main
from mug.data.synthetic.corpus import synthesize_corpus
from mug.data.synthetic.synth import sample_pairs
from mug.errors import UserError
from mug.history import HISTORY, read_history
from mug.train.config import load_train_config
from mug.train.loop import train
from mug.train.state import STATE, latest_checkpoint, load_training_state
from tests.conftest import limit_file_size
from tests.test_train import micro_argv, micro_settings

FILES = ("model.safetensors", "config.json", "tokenizer.json", STATE, HISTORY)


class _Planted:
    """A pickle that makes a directory if anything ever unpickles it."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return os.mkdir, (self.marker,)


def _truncate(path, marker):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _empty(path, marker):
    path.write_bytes(b"")


def _other_format(path, marker):
    path.write_bytes(pickle.dumps(_Planted(marker)))


def _directory(path, marker):
    path.unlink()
    path.mkdir()


DAMAGES = {
    "truncated": (_truncate, "truncated|not JSON|not a valid HF tokenizer"),
    "empty": (_empty, "is empty"),
    "other-format": (_other_format, "another format|not a torch file|not a valid HF tokenizer|not text"),
    "directory": (_directory, "is a directory, not a file"),
}
# A history cut off mid-line is what a killed run leaves, and an empty one has no rows yet: both are read as such.
CASES = [(f, d) for f in FILES for d in DAMAGES if not (f == HISTORY and d in ("truncated", "empty"))]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A one-step MUG run: its checkpoint holds all five files."""
    root = tmp_path_factory.mktemp("run")
    synthesize_corpus(root, train_samples=8, eval_samples=0, shard_size=8, image_size=32, progress=False)
    settings = micro_settings(data=[str(root / "train" / "00000.tar")], out=str(root / "out"), steps=1, batch_size=4)
    train(load_train_config(overrides=settings))
    assert sorted(p.name for p in latest_checkpoint(root / "out" / "checkpoints").iterdir()) == sorted(FILES)
    return settings


def _damaged_run(run, tmp_path, name, damage):
    """A copy of the run, `name` in its checkpoint damaged (unless `damage` is None); (settings, checkpoint, the
    file, marker)."""
    settings = run | {"out": str(tmp_path / "out")}
    shutil.copytree(run["out"], settings["out"])
    checkpoint = latest_checkpoint(tmp_path / "out" / "checkpoints")
    marker = tmp_path / "unpickled"
    if damage is not None:
        DAMAGES[damage][0](checkpoint / name, str(marker))
    return settings, checkpoint, checkpoint / name, marker


def _one_line(capsys, command: str) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"mug {command}: error: "), lines
    return lines[0]


@pytest.mark.parametrize("name, damage", CASES, ids=[f"{f}-{d}" for f, d in CASES])
def test_the_loaders_name_the_damaged_file_and_what_is_wrong(run, tmp_path, name, damage):
    _, checkpoint, path, marker = _damaged_run(run, tmp_path, name, damage)
    with pytest.raises(UserError) as caught:
        load_checkpoint(checkpoint, need_tokenizer=True)
        load_training_state(checkpoint)
        read_history(checkpoint / HISTORY)
    message = str(caught.value)
    assert str(path) in message and re.search(DAMAGES[damage][1], message) and "\n" not in message, message
    assert not marker.exists()


@pytest.mark.parametrize("name, damage", CASES, ids=[f"{f}-{d}" for f, d in CASES])
def test_evaluate_and_resume_report_the_damaged_file_in_one_line(run, tmp_path, name, damage, capsys):
    settings, checkpoint, path, marker = _damaged_run(run, tmp_path, name, damage)
    if name != STATE:  # evaluation reads all but the optimiser's state
        argv = ["evaluate", str(checkpoint), "--data", settings["data"][0], "--out", str(tmp_path / "eval")]
        assert main(argv) == 2
        assert str(path) in _one_line(capsys, "evaluate")
    assert main(["pretrain", "--resume", *micro_argv(settings | {"steps": 2})]) == 2
    assert str(path) in _one_line(capsys, "pretrain")
    assert not marker.exists()


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda state: {"step": state["step"]}, "is not a mug training state .*KeyError"),
        (lambda state: state | {"rng": []}, "holds the RNG states of 0 process.*too few for 1"),
        (lambda state: state | {"optimizer": {"state": {}, "param_groups": []}}, "does not fit this run's optimiser"),
    ],
    ids=["not-a-state", "no-rng", "another-optimiser"],
)
def test_a_training_state_that_does_not_fit_the_run_is_named(run, tmp_path, change, message, capsys):
    settings, checkpoint, path, _ = _damaged_run(run, tmp_path, STATE, None)
    torch.save(change(torch.load(path, weights_only=True)), path)
    assert main(["pretrain", "--resume", *micro_argv(settings | {"steps": 2})]) == 2
    assert re.search(f"{re.escape(str(path))} .*{message}", _one_line(capsys, "pretrain"))


def _blocked(tmp_path):
    """A file where the commands below expect a folder."""
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    return blocker


def _unwritable(case: str, settings: dict, checkpoint: str, tmp_path) -> tuple[list[str], str]:
    """The command line of `case`, whose output cannot be written, and the path its error must name."""
    blocker, image = _blocked(tmp_path), tmp_path / "image.png"
    sample_pairs(1, size=32)[0][0].save(image)
    caption = ["caption", checkpoint, str(image), "--strip"]
    if case == "evaluate-out":
        return ["evaluate", checkpoint, "--data", settings["data"][0], "--out", f"{blocker}/eval"], str(blocker)
    if case == "pretrain-out":
        return ["pretrain", *micro_argv(settings | {"out": f"{blocker}/run"})], str(blocker)
    if case == "pretrain-history":
        history = Path(settings["out"]) / HISTORY
        history.unlink()
        history.mkdir()
        return ["pretrain", "--resume", *micro_argv(settings | {"steps": 2})], str(history)
    if case == "caption-strip":
        return [*caption, f"{blocker}/strip.png"], str(blocker)
    return [*caption, str(tmp_path / "strip.xyz")], str(tmp_path / "strip.xyz")  # no image format of that name


@pytest.mark.parametrize(
    "case", ["evaluate-out", "pretrain-out", "pretrain-history", "caption-strip", "caption-format"]
)
def test_a_place_that_takes_no_files_is_named_in_one_line(run, tmp_path, case, capsys):
    settings, checkpoint, _, _ = _damaged_run(run, tmp_path, STATE, None)
    argv, named = _unwritable(case, settings, str(checkpoint), tmp_path)
    assert main(argv) == 2
    line = _one_line(capsys, argv[0])
    assert "could not write" in line and named in line, line


def test_a_checkpoint_or_model_that_cannot_be_written_is_named_and_the_last_checkpoint_kept(run, tmp_path, monkeypatch):
    settings = run | {"out": str(tmp_path / "blocked")}
    (tmp_path / "blocked").mkdir()
    _blocked(tmp_path).rename(tmp_path / "blocked" / "checkpoints")
    with pytest.raises(
        UserError, match="could not write the checkpoint of step 1 under .*checkpoints .*; the last good"
    ):
        train(load_train_config(overrides=settings))

    def disk_full(directory, *args, **kwargs):
        raise OSError(28, "No space left on device", str(directory))

    monkeypatch.setattr("mug.train.loop.save_checkpoint", disk_full)
    settings = run | {"out": str(tmp_path / "full")}
    with pytest.raises(UserError, match=r"could not write the model to .*full/model \(No space left on device\); "
                                        r"the weights are in .*full/checkpoints/step-00000001"):  # fmt: skip
        train(load_train_config(overrides=settings))
    assert load_checkpoint(tmp_path / "full" / "checkpoints" / "step-00000001")[2]["step"] == 1


@pytest.mark.parametrize("command", ["synth", "validate", "tokenizer"])
def test_the_data_commands_name_a_place_that_takes_no_files(run, tmp_path, command, capsys):
    """Before any work: a bad --out should not cost a scan or a tokenizer's training first."""
    blocker, shards = _blocked(tmp_path), run["data"][0]
    argv = {
        "synth": ["synth", "--out", f"{blocker}/corpus", "--train", "8", "--eval", "0"],
        "validate": ["validate", shards, "--out", f"{blocker}/report"],
        "tokenizer": ["tokenizer", shards, "--out", f"{blocker}/tokenizer.json"],
    }[command]
    assert main(["data", *argv]) == 2
    line = _one_line(capsys, "data")
    assert "could not write" in line and str(blocker) in line, line


@pytest.mark.slow
def test_a_corpus_that_outgrows_the_disk_is_one_line_and_leaves_no_partial_shard(tmp_path):
    out = tmp_path / "corpus"
    mug = Path(sys.executable).with_name("mug")
    argv = [str(mug), "data", "synth", "--out", str(out), "--train", "400", "--eval", "0", "--image-size", "64"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    done = subprocess.run(
        argv, capture_output=True, text=True, env=env, preexec_fn=functools.partial(limit_file_size, 50_000)
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    last = done.stderr.strip().splitlines()[-1]  # after the progress bar
    assert last == f"mug data: error: could not write the corpus's shards in {out}: File too large", last
    assert list((out / "train").iterdir()) == []  # shards are renamed into place whole, or not at all
