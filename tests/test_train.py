"""The training loop for real: losses that fall, checkpoints, an exact resume after SIGKILL, errors that name things."""

import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from mug.checkpoint import CheckpointError, load_checkpoint
from mug.config import ConfigError
from mug.data.loading.augment import normalize
from mug.data.synthetic.corpus import synthesize_corpus
from mug.errors import UserError
from mug.train.config import load_train_config
from mug.train.loop import TrainingDiverged, _to_device, train
from mug.train.schedule import lr_at
from mug.train.state import checkpoints, latest_checkpoint, load_training_state
from tests.conftest import MICRO


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> str:
    root = tmp_path_factory.mktemp("web")
    synthesize_corpus(root, train_samples=256, eval_samples=0, shard_size=64, image_size=32, progress=False)
    return str(root / "train" / "{00000..00003}.tar")


def micro_settings(objective: str = "mug", **extra) -> dict:
    model = {section: dict(values) for section, values in MICRO.items()}
    return {
        "objective": objective,
        "model": model,
        "batch_size": 8,
        "num_workers": 0,
        "shuffle_buffer": 32,
        "wandb": "disabled",
        "log_every": 1,
        **extra,
    }


def micro_argv(settings: dict) -> list[str]:
    return [arg for key, value in settings.items() for arg in ("--set", f"{key}={json.dumps(value)}")]


def test_schedule_warms_up_linearly_then_follows_a_cosine_to_the_floor():
    lrs = [lr_at(s, 1.0, 100, 10, 0.1) for s in range(100)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert lrs[55] == pytest.approx(0.55, abs=0.01)  # half-way through the cosine: the mean of peak and floor
    assert lrs[-1] == pytest.approx(0.1, abs=1e-3)
    assert all(a >= b for a, b in zip(lrs[9:], lrs[10:], strict=False))


def test_config_errors_name_the_field(tmp_path):
    with pytest.raises(ConfigError, match="unknown training setting.*stepz"):
        load_train_config(overrides={"data": ["x.tar"], "stepz": 3})
    with pytest.raises(ConfigError, match="batch_size must be an integer"):
        load_train_config(overrides={"data": ["x.tar"], "batch_size": "big"})
    with pytest.raises(ConfigError, match="precision must be one of"):
        load_train_config(overrides={"data": ["x.tar"], "precision": "fp8"})
    with pytest.raises(ConfigError, match="^model.encoder.depth must be positive"):  # as the user sets it
        load_train_config(overrides={"data": ["x.tar"], "model": {"encoder": {"depth": 0}}})
    with pytest.raises(ConfigError, match=r"^model.objective.w_rec and model.objective.w_cap must be >= 0"):
        load_train_config(overrides={"data": ["x.tar"], "model": {"objective": {"w_rec": -1.0}}})
    with pytest.raises(ConfigError, match=r"crop_scale must be two fractions .* got \[0.9, 0.2\]"):
        load_train_config(overrides={"data": ["x.tar"], "crop_scale": [0.9, 0.2]})
    file = tmp_path / "run.yaml"
    file.write_text("data: a.tar\nsteps: 7\nmodel:\n  encoder: {depth: 3}\n")
    cfg = load_train_config(file, {"model": {"encoder": {"width": 96}}})
    assert (cfg.data, cfg.steps, cfg.model_config().encoder.depth, cfg.model_config().encoder.width) == (
        ["a.tar"],
        7,
        3,
        96,
    )


@pytest.mark.parametrize("objective,base_lr", [("mug", 0.05), ("mae", 0.05), ("simclr", 0.003), ("clip", 0.01)])
def test_losses_fall_and_the_model_is_saved(objective, base_lr, shards, tmp_path):
    cfg = load_train_config(
        overrides=micro_settings(
            objective,
            data=[shards],
            out=str(tmp_path),
            steps=30,
            base_lr=base_lr,
            warmup_steps=3,
            ckpt_every=10,
            batch_size=16,
        )
    )
    result = train(cfg)
    history = [json.loads(line) for line in (tmp_path / "history.jsonl").read_text().splitlines()]
    assert [row["step"] for row in history] == list(range(1, 31))
    first, last = (sum(row["loss"] for row in rows) / 5 for rows in (history[:5], history[-5:]))
    assert last < 0.9 * first, (first, last)
    model, tokenizer, meta = load_checkpoint(result.model_dir)
    assert meta["step"] == 30 and meta["train"]["objective"] == objective
    assert (tokenizer is not None) == (objective in ("mug", "clip"))
    assert [p.name for p in checkpoints(tmp_path / "checkpoints")] == ["step-00000020", "step-00000030"]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["final_losses"]["loss"] == pytest.approx(history[-1]["loss"])
    assert summary["images_per_s"] > 0


def test_training_keeps_clips_temperature_within_its_bound(shards, tmp_path):
    """A CLIP model whose logit scale stands above the bound (as one from a looser recipe might) is brought back
    to it by the first optimiser step of a run that starts from it, and its first loss used the unclamped scale."""
    first = train(load_train_config(overrides=micro_settings("clip", data=[shards], steps=1, out=str(tmp_path / "a"))))
    weights = load_file(first.model_dir / "model.safetensors")
    weights["logit_scale"] = torch.tensor(math.log(1000.0))  # the default bound is 100
    save_file(weights, first.model_dir / "model.safetensors")
    run = micro_settings("clip", data=[shards], steps=1, init_from=str(first.model_dir), out=str(tmp_path / "b"))
    second = train(load_train_config(overrides=run))
    model, _, _ = load_checkpoint(second.model_dir)
    assert model.logit_scale.item() == pytest.approx(math.log(100.0))
    first_row = json.loads((tmp_path / "b" / "history.jsonl").read_text().splitlines()[0])
    assert first_row["logit_scale"] > 900


def test_gradient_accumulation_matches_one_big_batch(shards, tmp_path):
    """Two micro-batches of 8 with accumulation give the weights of one batch of 16: the caption loss is
    normalised by the step's token count, and the masks are drawn from the same stream in the same order."""
    common = micro_settings(data=[shards], steps=2, shuffle_buffer=0, base_lr=1e-3, clip_grad=0.0)
    big = train(load_train_config(overrides=common | {"batch_size": 16, "out": str(tmp_path / "big")}))
    acc = train(load_train_config(overrides=common | {"accum_steps": 2, "out": str(tmp_path / "acc")}))
    a, b = load_file(big.model_dir / "model.safetensors"), load_file(acc.model_dir / "model.safetensors")
    assert max((a[k] - b[k]).abs().max().item() for k in a) < 1e-5
    assert acc.final_losses["loss_cap"] == pytest.approx(big.final_losses["loss_cap"], rel=1e-5)


def _run(argv: list[str], **kw) -> subprocess.Popen:
    env = dict(os.environ, WANDB_MODE="disabled", OMP_NUM_THREADS="1")
    return subprocess.Popen(
        [sys.executable, "-m", "mug.cli", *argv],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        **kw,
    )


@pytest.mark.slow
def test_a_run_killed_with_sigkill_and_resumed_ends_with_the_same_weights(shards, tmp_path):
    settings = micro_settings(data=[shards], steps=40, ckpt_every=4, keep_last=3, num_workers=1)
    straight = _run(["pretrain", "--out", str(tmp_path / "straight"), *micro_argv(settings)])
    victim = _run(["pretrain", "--out", str(tmp_path / "killed"), *micro_argv(settings)])
    ckpts = tmp_path / "killed" / "checkpoints"
    deadline = time.time() + 120
    while latest_checkpoint(ckpts) is None or latest_checkpoint(ckpts).name < "step-00000012":
        assert victim.poll() is None, "the run ended before it could be killed"
        assert time.time() < deadline
        time.sleep(0.02)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    killed_at = load_training_state(latest_checkpoint(ckpts)).step
    assert 12 <= killed_at < 40
    resumed = _run(["pretrain", "--out", str(tmp_path / "killed"), "--resume", *micro_argv(settings)])
    out, _ = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, out
    assert f"resumed from {ckpts}/step-{killed_at:08d} at step {killed_at}" in out
    assert straight.wait(timeout=300) == 0
    a = load_file(tmp_path / "straight" / "model" / "model.safetensors")
    b = load_file(tmp_path / "killed" / "model" / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a), "resumed weights differ from the uninterrupted run's"
    steps = [json.loads(line)["step"] for line in (tmp_path / "killed" / "history.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 41))  # no step logged twice or lost


def test_a_diverging_run_stops_and_keeps_its_last_good_checkpoint(shards, tmp_path):
    cfg = load_train_config(
        overrides=micro_settings(
            "mae",
            data=[shards],
            out=str(tmp_path),
            steps=30,
            base_lr=1e6,
            warmup_steps=0,
            clip_grad=0.0,
            ckpt_every=1,
        )
    )
    with pytest.raises(TrainingDiverged, match="the (loss|gradient norm) is (nan|inf).*Last good checkpoint: .*step-"):
        train(cfg)
    last = latest_checkpoint(tmp_path / "checkpoints")
    model, _, _ = load_checkpoint(last)
    assert all(torch.isfinite(p).all() for p in model.parameters())


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--set", "model=3"], "model must be a mapping, got 3"),
        (["--set", "model.encoder=3"], "model.encoder must map fields to values .* got 3"),
        (["--set", "model=3", "--set", "model.encoder.depth=2"], "'model.encoder.depth=2' sets a field of model"),
        (["--set", "model.encoder.depth.x=3"], r"encoder.depth must be an integer, got \{'x': 3\}"),
        (["--set", "steps.x=3"], r"steps must be an integer, got \{'x': 3\}"),
        (["--set", "betas=3"], "betas must be 2 numbers, got 3"),
        (["--set", "warmup_steps=x"], "warmup_steps must be an integer or null, got 'x'"),
        (["--set", "init_from=3"], "init_from must be a string or null, got 3"),
        (["--set", "data=[1]"], r"data must be a list of strings, got \[1\]"),
        (["--objective", "mae", "--set", "model.objective.mask_ratio=0"], "mask_ratio 0.0 masks none of the"),
        (["--set", "model.objective.name=clip"], r"model.objective.name \('clip'\) differs from objective \('mug'\)"),
        (["--objective", "simclr", "--accum-steps", "2"], "accum_steps=2 with objective simclr: .* fewer negatives"),
        (["--objective", "clip", "--set", "accum_steps=4"], "accum_steps=4 with objective clip: .* fewer negatives"),
    ],
)
def test_settings_of_the_wrong_shape_are_one_line_errors(argv, message, capsys):
    from mug.cli import main

    assert main(["pretrain", "--set", "data=[x.tar]", *argv]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert re.match(f"mug pretrain: error: .*{message}", line), line


def test_shards_without_samples_are_named(tmp_path):
    empty = tmp_path / "empty.tar"
    import tarfile

    tarfile.open(empty, "w").close()
    cfg = load_train_config(overrides=micro_settings("mae", data=[str(empty)], out=str(tmp_path / "o"), steps=2))
    with pytest.raises(UserError, match=f"shards {empty} yielded no usable samples"):
        train(cfg)


@pytest.mark.parametrize(
    "workers, batch, message",
    [
        (0, 16, "batch_size 16 > the 12 samples available in .*: lower batch_size"),
        (2, 8, r"batch_size 8 > the samples each of the 2 loader workers reads \(12 in all, split by shard\)"),
    ],
)
def test_a_batch_larger_than_the_data_says_so_with_both_numbers(tmp_path, workers, batch, message):
    synthesize_corpus(tmp_path, train_samples=12, eval_samples=0, shard_size=6, image_size=32, progress=False)
    data = str(tmp_path / "train" / "{00000..00001}.tar")
    settings = micro_settings("mae", data=[data], out=str(tmp_path / "o"), steps=2, batch_size=batch)
    with pytest.raises(UserError, match=message):
        train(load_train_config(overrides=settings | {"num_workers": workers}))


def test_resume_refuses_a_checkpoint_of_another_model(shards, tmp_path):
    train(load_train_config(overrides=micro_settings("mae", data=[shards], out=str(tmp_path), steps=2)))
    other = micro_settings("mae", data=[shards], out=str(tmp_path), steps=4)
    other["model"]["encoder"]["depth"] = 3
    with pytest.raises(CheckpointError, match="cannot start from .*encoder.depth: checkpoint 2, run 3"):
        train(load_train_config(overrides=other), resume=True)


@pytest.mark.slow
def test_a_checkpoint_that_cannot_be_written_leaves_the_previous_one_loadable(shards, tmp_path):
    """A real write failure: the child process may not write files over 64 KiB (RLIMIT_FSIZE), as on a full disk."""
    train(load_train_config(overrides=micro_settings("mae", data=[shards], out=str(tmp_path), steps=2)))
    argv = ["pretrain", "--out", str(tmp_path), "--resume", "--set", "steps=4"]
    argv += micro_argv(micro_settings("mae", data=[shards]))
    script = (
        "import resource, signal, sys\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (65536, 65536))\n"
        "from mug.cli import main\n"
        f"sys.exit(main({argv!r}))\n"
    )
    child = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ, WANDB_MODE="disabled"),
    )
    assert child.returncode == 2, child.stderr
    assert "could not write the checkpoint of step 4" in child.stderr
    assert "the last good one is" in child.stderr and "step-00000002" in child.stderr
    model, _, meta = load_checkpoint(latest_checkpoint(tmp_path / "checkpoints"))
    assert meta["step"] == 2
    assert not [p for p in (tmp_path / "checkpoints").iterdir() if p.name.startswith(".")]  # no temp left behind
    assert math.isfinite(sum(p.sum().item() for p in model.parameters()))
    assert Path(tmp_path / "model" / "model.safetensors").is_file()


@pytest.mark.slow
def test_two_process_ddp_through_torchx_sees_different_data_and_saves_once(shards, tmp_path):
    """`mug pretrain --nproc 2`: torchx's dist.torchrun on local_cwd, two gloo ranks on the CPU."""
    settings = micro_settings("mae", data=[shards], steps=6, ckpt_every=3)
    run = _run(["pretrain", "--nproc", "2", "--out", str(tmp_path), *micro_argv(settings)])
    out, _ = run.communicate(timeout=300)
    assert run.returncode == 0, out
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["world_size"] == 2
    ranks = sorted(summary["ranks"], key=lambda r: r["rank"])
    assert [r["rank"] for r in ranks] == [0, 1]
    assert set(ranks[0]["first_keys"]).isdisjoint(ranks[1]["first_keys"])  # each rank drew its own samples
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["step-00000003", "step-00000006"]
    steps = [json.loads(line)["step"] for line in (tmp_path / "history.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 7))  # logged once, by rank 0
    model, _, meta = load_checkpoint(tmp_path / "model")
    assert meta["world_size"] == 2 and meta["step"] == 6


def test_kubernetes_dry_run_renders_the_same_training_command(shards):
    from mug.cli import main

    settings = micro_settings("mae", data=[shards], steps=6)
    argv = [
        "pretrain",
        "--scheduler",
        "kubernetes",
        "--image",
        "ghcr.io/acme/mug:0.1.0",
        "--nodes",
        "2",
        "--gpus-per-node",
        "8",
        "--nproc",
        "8",
        "--queue",
        "research",
        "--dryrun",
        "--crop-on-device",
        *micro_argv(settings),
    ]
    import contextlib
    import io

    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        assert main(argv) == 0
    rendered = buffer.getvalue()
    assert "ghcr.io/acme/mug:0.1.0" in rendered and "research" in rendered and "nvidia.com/gpu" in rendered
    assert "mug.cli" in rendered and "pretrain" in rendered and '"mae"' in rendered
    assert "crop_on_device=true" in rendered  # the flag reaches the pods' command line


@pytest.mark.slow
def test_wandb_offline_run_records_the_losses_and_sample_images(shards, tmp_path, monkeypatch):
    """The default tracking mode, for real: an offline W&B run that `wandb sync` can upload later."""
    monkeypatch.delenv("WANDB_MODE", raising=False)
    cfg = load_train_config(
        overrides=micro_settings(data=[shards], out=str(tmp_path), steps=4, sample_every=2, wandb="offline")
    )
    train(cfg)
    (run,) = (tmp_path / "wandb").glob("offline-run-*")
    (log,) = run.glob("run-*.wandb")
    assert log.stat().st_size > 0
    samples = sorted(p.name.split("_")[1] for p in (run / "files" / "media" / "images" / "samples").glob("*.png"))
    assert samples == ["2", "4"]  # a reconstruction strip (with its generated caption) every 2 steps


def test_init_from_continues_a_trained_model_with_a_fresh_optimiser(shards, tmp_path):
    first = train(
        load_train_config(overrides=micro_settings(data=[shards], out=str(tmp_path / "a"), steps=20, base_lr=0.05))
    )
    start_loss = json.loads((tmp_path / "a" / "history.jsonl").read_text().splitlines()[0])["loss"]
    cfg = micro_settings(data=[shards], out=str(tmp_path / "b"), steps=2, base_lr=0.05, init_from=str(first.model_dir))
    second = train(load_train_config(overrides=cfg))
    rows = [json.loads(line) for line in (tmp_path / "b" / "history.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2]  # a new run: step 0, new schedule
    assert rows[0]["loss"] < start_loss - 0.1  # but it starts where the first run ended, not from scratch
    assert (tmp_path / "b" / "model" / "tokenizer.json").read_bytes() == (
        first.model_dir / "tokenizer.json"
    ).read_bytes()
    assert second.model_dir.is_dir()
    with pytest.raises(ConfigError, match="init_from: .* is not a checkpoint directory"):
        load_train_config(overrides=micro_settings(data=[shards], init_from=str(tmp_path / "nowhere")))


@pytest.mark.slow
def test_sigterm_saves_the_step_in_flight_and_stops(shards, tmp_path):
    """What a preempted pod gets: the run finishes its step, checkpoints it, and says how to resume."""
    settings = micro_settings("mae", data=[shards], steps=400, ckpt_every=1000)
    run = _run(["pretrain", "--out", str(tmp_path), *micro_argv(settings)])
    history = tmp_path / "history.jsonl"
    deadline = time.time() + 120
    while not history.is_file() or len(history.read_text().splitlines()) < 3:
        assert run.poll() is None and time.time() < deadline
        time.sleep(0.02)
    run.send_signal(signal.SIGTERM)
    out, _ = run.communicate(timeout=60)
    assert run.returncode == 2, out
    step = load_training_state(latest_checkpoint(tmp_path / "checkpoints")).step
    assert 3 <= step < 400
    assert f"stopped by SIGTERM after step {step} of 400" in out and "--resume continues" in out
    assert json.loads(history.read_text().splitlines()[-1])["step"] == step


def test_bf16_autocast_trains_on_the_cpu_and_fp16_is_refused_there(shards, tmp_path):
    settings = micro_settings("mug", data=[shards], steps=8, base_lr=0.05, precision="bf16")
    result = train(load_train_config(overrides=settings | {"out": str(tmp_path / "bf16")}))
    rows = [json.loads(line) for line in (tmp_path / "bf16" / "history.jsonl").read_text().splitlines()]
    assert all(math.isfinite(r["loss"]) for r in rows) and rows[-1]["loss"] < rows[0]["loss"]
    model, _, _ = load_checkpoint(result.model_dir)
    assert all(p.dtype == torch.float32 for p in model.parameters())  # autocast: the weights stay fp32
    with pytest.raises(ConfigError, match="fp16 needs a CUDA GPU"):
        train(load_train_config(overrides=settings | {"precision": "fp16", "out": str(tmp_path / "fp16")}))


@pytest.mark.slow
def test_compiled_training_matches_eager_and_saves_plain_weights(shards, tmp_path):
    """`compile: true` (torch.compile, inductor on the CPU): the losses of eager within 2% (inductor draws the
    random masks from its own generator, so they differ), and a checkpoint with the model's own parameter names
    (no `_orig_mod.` prefix)."""
    settings = micro_settings("mae", data=[shards], steps=3, shuffle_buffer=0)
    eager = train(load_train_config(overrides=settings | {"out": str(tmp_path / "eager")}))
    compiled = train(load_train_config(overrides=settings | {"out": str(tmp_path / "compiled"), "compile": True}))
    assert compiled.final_losses["loss"] == pytest.approx(eager.final_losses["loss"], rel=0.02)
    a, b = load_file(eager.model_dir / "model.safetensors"), load_file(compiled.model_dir / "model.safetensors")
    assert a.keys() == b.keys()
    load_checkpoint(compiled.model_dir)


def test_uint8_batches_are_normalised_where_they_land():
    """Off CPU the loader hands over uint8 images (a quarter of the bytes to move); the step normalises them."""
    images = torch.randint(0, 256, (2, 3, 8, 8), dtype=torch.uint8).contiguous(memory_format=torch.channels_last)
    batch = {"key": ["a", "b"], "image": images, "tokens": torch.ones(2, 5, dtype=torch.long)}
    moved = _to_device(batch, ("image", "tokens"), torch.device("cpu"), 8)
    assert set(moved) == {"image", "tokens"} and moved["image"].dtype == torch.float32
    torch.testing.assert_close(moved["image"], normalize(images))
    assert moved["tokens"] is batch["tokens"]  # already where it belongs: not copied
    floats = normalize(images)
    assert _to_device({"image": floats}, ("image",), torch.device("cpu"), 8)["image"] is floats


def test_cropping_on_the_device_trains_like_cropping_in_the_workers(shards, tmp_path):
    """`crop_on_device` draws the same boxes and flips and gives pixels within a grey level, so a run follows the
    same losses; SimCLR's augmentations cannot move and are refused by name."""
    common = micro_settings(data=[shards], steps=4, shuffle_buffer=16, base_lr=1e-3, num_workers=1)
    workers = train(load_train_config(overrides=common | {"out": str(tmp_path / "workers")}))
    device = train(load_train_config(overrides=common | {"out": str(tmp_path / "device"), "crop_on_device": True}))
    for name, value in workers.final_losses.items():
        assert device.final_losses[name] == pytest.approx(value, rel=1e-4), name
    with pytest.raises(ConfigError, match="crop_on_device: SimCLR"):
        load_train_config(overrides=micro_settings("simclr", data=[shards], crop_on_device=True)).validate()
