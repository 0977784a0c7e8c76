"""End to end: `mug pretrain` on img2dataset shards on local disk, through the real loader and its worker processes,
against the bare training step of the same model, batch and precision in the same process.

Issue 14's goal on a GPU: the loop at >= 90% of the bare step's images/s for MUG-base, with and without
`crop_on_device` (the faster becomes the CUDA default). Each round times the bare step (forward, loss, backward,
AdamW; `train_step.py`'s step on a resident random batch), then a training run per loader setting, in an order
swapped every round; a run's rate is the median of its logged images/s after `--skip` steps (compilation, worker
start-up, the shuffle buffer). Ratios are taken within a round, then the median and range over rounds.
`--largest-batch` (CUDA) also finds the largest batch whose bare step fits in memory, and its images/s.

    .venv/bin/python benchmarks/end_to_end.py --preset tiny --steps 40 --rounds 2          # a CPU smoke run
    python benchmarks/end_to_end.py --preset base --batch 256 --compile --workers 12 --largest-batch --json J
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

import torch
from loader import write_shards  # benchmarks/ is on sys.path when this file runs as a script
from train_step import device_name, make_batch, median_seconds, train_step

from mug.config import OBJECTIVES, preset_names
from mug.data.tokenizer_corpus import train_tokenizer
from mug.models import build_model
from mug.optim import build_optimizer
from mug.tokenizer import CaptionTokenizer
from mug.train.config import TrainConfig, load_train_config
from mug.train.loop import train

LOADERS = {"workers crop": False, "crop_on_device": True}


@dataclass
class Round:
    bare_images_per_s: float
    loop_images_per_s: dict[str, float]  # by loader setting

    def ratios(self) -> dict[str, float]:
        return {name: rate / self.bare_images_per_s for name, rate in self.loop_images_per_s.items()}


def settings(args: argparse.Namespace, shards: str, tokenizer: str | None, out: Path, crop_on_device: bool) -> dict:
    return {
        "objective": args.objective,
        "preset": args.preset,
        "data": [shards],
        "tokenizer": tokenizer,
        "out": str(out),
        "steps": args.steps,
        "batch_size": args.batch,
        "num_workers": args.workers,
        "shuffle_buffer": args.shuffle_buffer,
        "precision": args.dtype,
        "compile": args.compile,
        "device": args.device,
        "crop_on_device": crop_on_device,
        "log_every": args.log_every,
        "ckpt_every": args.steps,
        "keep_last": 1,
        "wandb": "disabled",
    }


def loop_rate(cfg: TrainConfig, skip: int) -> float:
    """The run's images/s: the median of the rates it logged after its first `skip` steps."""
    train(cfg)
    rows = [json.loads(line) for line in (Path(cfg.out) / "history.jsonl").read_text().splitlines()]
    rates = [row["images_per_s"] for row in rows if row["step"] > skip]
    if not rates:
        raise SystemExit(f"no logged step after --skip {skip}: raise --steps or lower --skip")
    return statistics.median(rates)


def bare_step(cfg: TrainConfig, tokenizer: CaptionTokenizer | None, args: argparse.Namespace):
    """The training step of `cfg`'s model (the tokenizer's vocabulary, as training builds it) on a resident batch."""
    torch.manual_seed(0)
    model_cfg = cfg.model_config(tokenizer.vocab_size, tokenizer.pad_id) if tokenizer else cfg.model_config()
    model = build_model(model_cfg).to(args.device)
    runner = torch.compile(model) if args.compile else model
    optimizer = build_optimizer(model, lr=1.5e-4)
    return model, runner, optimizer


def bare_rate(cfg: TrainConfig, tokenizer: CaptionTokenizer | None, args: argparse.Namespace, batch: int) -> float:
    model, runner, optimizer = bare_step(cfg, tokenizer, args)
    inputs = make_batch(model, batch, args.device)
    # What train_step.py's timing reads: its --steps are our --bare-steps.
    timing = argparse.Namespace(device=args.device, dtype=args.dtype, warmup=args.warmup, steps=args.bare_steps)
    return batch / median_seconds(partial(train_step, runner, optimizer, inputs, timing), timing)


def fits(cfg: TrainConfig, tokenizer: CaptionTokenizer | None, args: argparse.Namespace, batch: int) -> float | None:
    """The bare step's images/s at `batch`, or None if it runs out of GPU memory."""
    try:
        return bare_rate(cfg, tokenizer, args, batch)
    except torch.OutOfMemoryError:
        return None
    finally:
        torch.cuda.empty_cache()


def largest_batch(cfg: TrainConfig, tokenizer: CaptionTokenizer | None, args: argparse.Namespace) -> dict:
    """Doubling from --batch until a step runs out of memory, then bisection to a multiple of 8."""
    low, rate = args.batch, fits(cfg, tokenizer, args, args.batch)
    if rate is None:
        return {"batch": None, "images_per_s": None, "note": f"--batch {args.batch} does not fit"}
    high = low * 2
    while (r := fits(cfg, tokenizer, args, high)) is not None:
        low, rate, high = high, r, high * 2
    while high - low > 8:
        middle = (low + high) // 2 // 8 * 8
        if (r := fits(cfg, tokenizer, args, middle)) is not None:
            low, rate = middle, r
        else:
            high = middle
    return {"batch": low, "images_per_s": rate, "peak_mem_mib": torch.cuda.max_memory_allocated() / 2**20}


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f})"


def main(argv: list[str] | None = None) -> None:
    cuda = torch.cuda.is_available()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add = parser.add_argument
    add("--objective", default="mug", choices=OBJECTIVES)
    add("--preset", default="tiny", choices=preset_names())
    add("--batch", type=int, default=64, help="images per step (default: %(default)s)")
    add("--steps", type=int, default=60, help="training steps per run (default: %(default)s)")
    add("--skip", type=int, default=20, help="steps left out of a run's rate (default: %(default)s)")
    add("--log-every", type=int, default=10, help="the run's log interval: one rate per interval (default: 10)")
    add("--warmup", type=int, default=5, help="untimed bare steps (default: %(default)s)")
    add("--bare-steps", type=int, default=20, help="timed bare steps (default: %(default)s)")
    add("--rounds", type=int, default=3, help="rounds of bare step + one run per loader setting (default: 3)")
    add("--workers", type=int, default=2, help="loader worker processes (default: %(default)s)")
    add("--shuffle-buffer", type=int, default=1000)
    add("--data", help="shards to read (brace notation); default: --samples photo-like JPEGs written to a temp folder")
    add("--samples", type=int, default=2048, help="samples written when --data is not given (default: %(default)s)")
    add("--side", type=int, help="JPEG side of the written samples (default: 256, img2dataset's, or 64 for tiny)")
    add("--device", choices=("cpu", "cuda"), default="cuda" if cuda else "cpu")
    add("--dtype", choices=("fp32", "bf16"), help="(default: bf16 on CUDA, fp32 on the CPU)")
    add("--compile", action="store_true", help="torch.compile the model in both the bare step and the runs")
    add("--largest-batch", action="store_true", help="(CUDA) also find the largest batch that fits, and its img/s")
    add("--json", metavar="PATH", help="also write the settings and every figure as JSON")
    args = parser.parse_args(argv)
    if args.device == "cuda" and not cuda:
        parser.error("--device cuda was asked for, but torch sees no CUDA device")
    if args.largest_batch and args.device != "cuda":
        parser.error("--largest-batch measures GPU memory: it needs --device cuda")
    if args.skip >= args.steps:
        parser.error("--skip must be below --steps")
    args.dtype = args.dtype or ("bf16" if args.device == "cuda" else "fp32")
    side = args.side or (64 if args.preset == "tiny" else 256)

    with tempfile.TemporaryDirectory(prefix="mug-e2e-") as tmp:
        root = Path(tmp)
        shards = args.data
        if shards is None:
            print(f"writing {args.samples} samples of {side} px ...", file=sys.stderr, flush=True)
            write_shards(root / "shards", side, args.samples, per_shard=256)
            shards = str(root / "shards" / f"{{00000..{(args.samples - 1) // 256:05d}}}.tar")
        base = load_train_config(overrides=settings(args, shards, None, root / "run", False))
        tokenizer_path = None
        if "tokens" in build_model(base.model_config()).inputs:
            tokenizer_path = str(root / "tokenizer.json")
            train_tokenizer([shards], tokenizer_path, vocab_size=8192, min_frequency=1)
        tokenizer = CaptionTokenizer.from_file(tokenizer_path) if tokenizer_path else None
        loaders = {name: on for name, on in LOADERS.items() if not (on and args.objective == "simclr")}

        rounds = []
        for index in range(args.rounds):
            order = ["bare", *loaders][:: 1 if index % 2 == 0 else -1]
            bare, runs = 0.0, {}
            for what in order:
                print(f"round {index + 1}/{args.rounds}: {what} ...", file=sys.stderr, flush=True)
                if what == "bare":
                    bare = bare_rate(base, tokenizer, args, args.batch)
                    continue
                out = root / f"run-{index}-{what.replace(' ', '-')}"
                cfg = load_train_config(overrides=settings(args, shards, tokenizer_path, out, loaders[what]))
                runs[what] = loop_rate(cfg, args.skip)
            rounds.append(Round(bare, runs))
        largest = largest_batch(base, tokenizer, args) if args.largest_batch else None

    print(f"\n{device_name(args.device)}, torch {torch.__version__}, {args.objective} {args.preset}, batch "
          f"{args.batch}, {args.dtype}, {'compiled' if args.compile else 'eager'}, {args.workers} loader workers, "
          f"{args.rounds} rounds (median (range))")  # fmt: skip
    print("| | images/s | loop / bare step (goal >= 0.90) |\n|---|---:|---:|")
    print(f"| bare step | {spread([r.bare_images_per_s for r in rounds])} | 1 |")
    for name in loaders:
        rates, ratios = [r.loop_images_per_s[name] for r in rounds], [r.ratios()[name] for r in rounds]
        print(f"| `mug pretrain`, {name} | {spread(rates)} | {spread(ratios)} |")
    if largest:
        print(f"largest batch that fits: {largest}")
    if args.json:
        meta = {"device": device_name(args.device), "torch": torch.__version__, "time": time.strftime("%FT%TZ")}
        out = {**meta, "settings": vars(args)}
        out |= {"rounds": [asdict(r) | {"ratios": r.ratios()} for r in rounds], "largest_batch": largest}
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
