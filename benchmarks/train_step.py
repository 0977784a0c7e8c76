"""Benchmark a full training step of each objective: time, images/s, peak memory, model FLOPs and MFU.

A step is what training does: forward, loss, backward, AdamW step, zero_grad. Model FLOPs are counted by
torch's FlopCounterMode, not by hand; MFU divides them by the step time and by the peak matmul FLOP/s measured
on this machine in the benchmarked dtype, so CPU and GPU figures compare as utilisation.
Goals and how to run: benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import platform
import resource
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from functools import partial
from typing import NamedTuple

import official_mae  # benchmarks/ is on sys.path when this file runs as a script
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from mug.config import OBJECTIVES, ModelConfig, build_config, preset_names
from mug.models import Objective, build_model
from mug.optim import build_optimizer

MASK_RATIO = 0.75
# Batch per preset on (CUDA, CPU): base at 8 on a small CPU already takes seconds a step; on a GPU, batches
# below ~256 measure Python and kernel launches rather than the GPU.
DEFAULT_BATCH = {"tiny": (64, 64), "small": (16, 16), "base": (256, 8)}


class Reference(NamedTuple):
    """MAE's original model measured on a 2-core CPU in fp32: ours must match or beat its images/s."""

    preset: str
    batch: int
    images_per_s: float
    overrides: dict


# Spelled out rather than taken from the presets, which may change while the reference does not.
REFERENCES = {
    "ref-64": Reference("tiny", 64, 193.0, {
        "encoder": {"img_size": 64, "patch_size": 8, "width": 192, "depth": 6, "heads": 3},
        "pixel_decoder": {"width": 128, "depth": 2, "heads": 4},
    }),
    "ref-vits": Reference("small", 16, 14.0, {
        "encoder": {"img_size": 224, "patch_size": 16, "width": 384, "depth": 12, "heads": 6},
        "pixel_decoder": {"width": 256, "depth": 4, "heads": 8},
    }),
}  # fmt: skip


@dataclass
class Row:
    objective: str
    preset: str
    batch: int
    ms_per_step: float
    images_per_s: float  # a SimCLR sample (two views of one image) counts as one image
    peak_mem_mib: float  # CUDA: max_memory_allocated; CPU: the process peak RSS (ru_maxrss)
    mem_growth_mib: float  # how much this row raised that figure
    flops_per_step: float
    mfu: float
    reference_images_per_s: float | None


@dataclass
class SideBySide:
    preset: str
    batch: int
    rounds: int
    ms_per_step: float  # our mae objective: the median over rounds of each round's median step
    official_ms_per_step: float  # facebookresearch/mae's model, timed alike
    speedup: float  # the official step time over ours, median over rounds: >= 1 means ours is as fast or faster
    speedup_low: float
    speedup_high: float


@dataclass
class Speedup:
    preset: str
    batch: int
    ms_per_image_full: float  # encoder forward+backward on all patches
    ms_per_image_masked: float  # on the patches MASK_RATIO leaves
    speedup: float


def model_config(name: str, objective: str) -> ModelConfig:
    preset, _, _, overrides = REFERENCES.get(name, (name, 0, 0.0, {}))
    return build_config(preset, overrides={**overrides, "objective": {"name": objective}})


def batch_size(name: str, args: argparse.Namespace) -> int:
    if args.batch:
        return args.batch
    if name in REFERENCES:
        return REFERENCES[name].batch
    on_cuda, on_cpu = DEFAULT_BATCH.get(name, (16, 16))
    return on_cuda if args.device == "cuda" else on_cpu


def make_batch(model: Objective, size: int, device: str) -> dict[str, torch.Tensor]:
    """Random inputs for exactly the keys the objective reads (`Objective.inputs`). Captions are BOS, 6 to 20
    word pieces (CC3M's alt-texts average about 12), EOS, then padding, so pad-aware code is timed fairly."""
    enc, text = model.cfg.encoder, model.cfg.text
    batch = {}
    for key in model.inputs:
        if key == "tokens":  # ids below 4 are the special tokens
            tokens = torch.randint(4, text.vocab_size, (size, text.context_length))
            lengths = torch.randint(6, min(20, text.context_length - 2) + 1, (size, 1))
            position = torch.arange(text.context_length)
            tokens[:, 0] = 2
            tokens[position[None] == lengths + 1] = 3
            tokens[position[None] > lengths + 1] = text.pad_id
            batch[key] = tokens.to(device)
        else:
            batch[key] = torch.randn(size, enc.in_chans, enc.img_size, enc.img_size, device=device)
    return batch


def autocast(args: argparse.Namespace) -> contextlib.AbstractContextManager:
    if args.dtype == "bf16":
        return torch.autocast(args.device, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def median_seconds(step, args: argparse.Namespace, warmup: int | None = None) -> float:
    """Median time of `step` after warm-up (allocator, autotuning and compilation happen there)."""
    for _ in range(args.warmup if warmup is None else warmup):
        step()
    times = []
    for _ in range(args.steps):
        sync(args.device)
        start = time.perf_counter()
        step()
        sync(args.device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def peak_matmul_flops(args: argparse.Namespace, rounds: int = 3) -> tuple[float, int]:
    """FLOP/s of large square matmuls in the benchmarked dtype (small ones understate the peak).

    The best of a few rounds, each the mean over several matmuls: a busy neighbour can only slow a round down.
    """
    size, repeats = (8192, 20) if args.device == "cuda" else (4096, 3)
    kind = torch.bfloat16 if args.dtype == "bf16" else torch.float32
    a, b = (torch.randn(size, size, device=args.device, dtype=kind) for _ in range(2))
    for _ in range(3):
        a @ b
    best = 0.0
    for _ in range(rounds):
        sync(args.device)
        start = time.perf_counter()
        for _ in range(repeats):
            a @ b
        sync(args.device)
        best = max(best, 2 * size**3 * repeats / (time.perf_counter() - start))
    return best, size


def peak_memory_mib(device: str, reset: bool = False) -> float:
    """CUDA: peak allocated since the last reset; CPU: the process peak RSS (ru_maxrss), which only grows."""
    if device == "cuda":
        if reset:
            torch.cuda.reset_peak_memory_stats()
        return torch.cuda.max_memory_allocated() / 2**20
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 2**10  # bytes on macOS, KiB on Linux


def count_flops(model: Objective, batch: dict[str, torch.Tensor]) -> int:
    """Model FLOPs of one fp32 forward+backward. The math SDPA backend spells attention as bmm's, which are
    counted; FlopCounterMode has no formula for the fused CPU attention kernel."""
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        model(batch)["loss"].backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops()


def train_step(model, optimizer: torch.optim.Optimizer, batch, args: argparse.Namespace) -> None:
    with autocast(args):
        loss = model(batch)["loss"]
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def build(name: str, objective: str, args: argparse.Namespace) -> torch.nn.Module:
    """Our objective's model, or the official MAE at our MAE's size (`--official-mae`)."""
    if objective == official_mae.OBJECTIVE:
        return official_mae.OfficialMAE(args.official_module, model_config(name, "mae"))
    return build_model(model_config(name, objective))


def measure_step(name: str, objective: str, args: argparse.Namespace, peak_flops: float) -> Row:
    """One row; both sides of a comparison use the same optimiser (our fused AdamW), batch and timing."""
    torch.manual_seed(0)
    mark = peak_memory_mib(args.device, reset=True)
    model = build(name, objective, args).to(args.device)
    size = batch_size(name, args)
    batch = make_batch(model, size, args.device)
    optimizer = build_optimizer(model, lr=1.5e-4)
    runner = torch.compile(model) if args.compile else model
    seconds = median_seconds(lambda: train_step(runner, optimizer, batch, args), args)
    peak = peak_memory_mib(args.device)
    flops = count_flops(model, batch)  # after timing, so its fp32 math attention cannot set the memory peak
    ref = REFERENCES[name].images_per_s if name in REFERENCES else None
    mfu = flops / seconds / peak_flops
    return Row(objective, name, size, seconds * 1e3, size / seconds, peak, peak - mark, flops, mfu, ref)


def measure_encoder_speedup(name: str, args: argparse.Namespace) -> Speedup:
    """Encoder forward+backward per image on all patches vs on MAE's visible 25%: the saving masking buys."""
    torch.manual_seed(0)
    model = build_model(model_config(name, "mae")).to(args.device)
    encoder = torch.compile(model.encoder) if args.compile else model.encoder
    size = batch_size(name, args)
    images = make_batch(model, size, args.device)["image"]

    def ms_per_image(mask_ratio: float) -> float:
        def step():
            with autocast(args):
                latent = encoder(images, mask_ratio).latent
            latent.float().pow(2).mean().backward()
            model.zero_grad(set_to_none=True)

        return median_seconds(step, args) * 1e3 / size

    full, masked = ms_per_image(0.0), ms_per_image(MASK_RATIO)
    return Speedup(name, size, full, masked, full / masked)


def beside_official(name: str, args: argparse.Namespace) -> SideBySide:
    """Our mae objective and the official MAE at the same size, batch and optimiser, in one process, timed in
    alternating rounds (the order swapped each round) so that a busy neighbour slows both alike."""
    size, steps = batch_size(name, args), {}
    for objective in ("mae", official_mae.OBJECTIVE):
        torch.manual_seed(0)
        model = build(name, objective, args).to(args.device)
        batch, optimizer = make_batch(model, size, args.device), build_optimizer(model, lr=1.5e-4)
        runner = torch.compile(model) if args.compile else model
        steps[objective] = partial(train_step, runner, optimizer, batch, args)
        for _ in range(args.warmup):
            steps[objective]()
    times: dict[str, list[float]] = {objective: [] for objective in steps}
    for round_ in range(args.rounds):
        for objective in list(steps)[:: 1 if round_ % 2 == 0 else -1]:
            times[objective].append(median_seconds(steps[objective], args, warmup=0))
    ratios = [theirs / ours for ours, theirs in zip(times["mae"], times[official_mae.OBJECTIVE], strict=True)]
    ours_ms, official_ms = (statistics.median(times[o]) * 1e3 for o in steps)
    middle = statistics.median(ratios)
    return SideBySide(name, size, args.rounds, ours_ms, official_ms, middle, min(ratios), max(ratios))


def free_memory(device: str) -> None:
    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()


def mug_over_mae(rows: list[Row]) -> dict[str, float]:
    ms = {(r.objective, r.preset): r.ms_per_step for r in rows}
    return {p: ms["mug", p] / ms["mae", p] for o, p in ms if o == "mae" and ("mug", p) in ms}


def si(value: float) -> str:
    for prefix, scale in (("P", 1e15), ("T", 1e12), ("G", 1e9), ("M", 1e6)):
        if value >= scale:
            return f"{value / scale:.3g} {prefix}"
    return f"{value:.3g} "


def table(header: str, lines: list[str], markdown: bool) -> str:
    """Right-aligned columns from '|'-separated cells; Markdown adds the pipes and the alignment row."""
    cells = [line.split("|") for line in [header, *lines]]
    widths = [max(len(c) for c in column) for column in zip(*cells, strict=True)]
    sep, left, right = (" | ", "| ", " |") if markdown else ("  ", "", "")
    out = [left + sep.join(c.rjust(w) for c, w in zip(line, widths, strict=True)) + right for line in cells]
    if markdown:
        out.insert(1, "|" + "|".join("-" * (w + 1) + ":" for w in widths) + "|")
    return "\n".join(out)


def report(rows: list[Row], speedups: list[Speedup], ratios: dict[str, float], official: list[SideBySide], args) -> str:
    memory = "peak MiB (+row)" if args.device == "cuda" else "process peak RSS MiB (+row)"
    header = f"objective|preset|batch|ms/step|img/s|ref img/s|{memory}|FLOP/step|FLOP/s|MFU"
    lines = [
        f"{r.objective}|{r.preset}|{r.batch}|{r.ms_per_step:.1f}|{r.images_per_s:.1f}|"
        f"{r.reference_images_per_s or '-'}|{r.peak_mem_mib:.0f} (+{r.mem_growth_mib:.0f})|"
        f"{si(r.flops_per_step)}FLOP|{si(r.flops_per_step / r.ms_per_step * 1e3)}FLOP/s|{r.mfu:.1%}"
        for r in rows
    ]
    parts = [table(header, lines, args.markdown)]
    if ratios:
        lines = [f"{p}|{v:.2f}" for p, v in ratios.items()]
        parts.append(table("preset|MUG/MAE step time (goal <= 1.35 at base)", lines, args.markdown))
    if official:
        header = "preset|batch|rounds|our mae ms/step|official MAE ms/step|official / ours, median (range; goal >= 1)"
        lines = [
            f"{o.preset}|{o.batch}|{o.rounds}|{o.ms_per_step:.1f}|{o.official_ms_per_step:.1f}|"
            f"{o.speedup:.2f} ({o.speedup_low:.2f}-{o.speedup_high:.2f})"
            for o in official
        ]
        parts.append(table(header, lines, args.markdown))
    if speedups:
        header = f"preset|batch|encoder ms/img, mask 0|mask {MASK_RATIO}|speed-up (goal >= 2.5x)"
        lines = [
            f"{s.preset}|{s.batch}|{s.ms_per_image_full:.2f}|{s.ms_per_image_masked:.2f}|{s.speedup:.2f}x"
            for s in speedups
        ]
        parts.append(table(header, lines, args.markdown))
    return "\n\n".join(parts)


def device_name(device: str) -> str:
    if device == "cuda":
        return torch.cuda.get_device_name()
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as info:
        for line in info:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def parse_list(value: str, known: list[str], what: str, parser: argparse.ArgumentParser) -> list[str]:
    names = [v.strip() for v in value.split(",") if v.strip()]
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        parser.error(f"unknown {what} '{','.join(unknown)}'; choose from {', '.join(known)}")
    return names


def reference_help() -> str:
    lines = [
        "default batch on CUDA/CPU: " + ", ".join(f"{n} {gpu}/{cpu}" for n, (gpu, cpu) in DEFAULT_BATCH.items()),
        "ref-* are MAE's original models, run with the mae objective; their fp32 images/s on 2 CPU cores:",
    ]
    for name, (_, batch, speed, overrides) in REFERENCES.items():
        enc, dec = overrides["encoder"], overrides["pixel_decoder"]
        lines.append(
            f"  {name}: {enc['img_size']} px, patch {enc['patch_size']}, encoder {enc['width']}x"
            f"{enc['depth']}, pixel decoder {dec['width']}x{dec['depth']}, batch {batch}: {speed:g}"
        )
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    presets = preset_names() + list(REFERENCES)
    cuda = torch.cuda.is_available()
    parser = argparse.ArgumentParser(
        description=__doc__, epilog=reference_help(), formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add = parser.add_argument
    add("--objectives", default=",".join(OBJECTIVES), help="comma-separated (default: %(default)s)")
    add("--presets", default="tiny,small", help=f"comma-separated, from {', '.join(presets)} (default: %(default)s)")
    add("--batch", type=int, help="images per step for every row (default: per preset, see below)")
    add("--steps", type=int, default=20, help="timed steps; the median is reported (default: %(default)s)")
    add("--warmup", type=int, default=5, help="untimed steps before them (default: %(default)s)")
    add("--device", choices=("cpu", "cuda"), default="cuda" if cuda else "cpu", help="(default: %(default)s)")
    add("--dtype", choices=("fp32", "bf16"), help="bf16 autocasts forward and loss (default: bf16 on CUDA only)")
    add("--compile", action="store_true", help="torch.compile the model (the warm-up absorbs compilation)")
    add("--threads", type=int, help="torch.set_num_threads (default: torch's choice)")
    add(
        "--official-mae",
        metavar="CHECKOUT",
        help="also time facebookresearch/mae's models_mae.py from this checkout "
        "at our MAE's size, right after each mae row (not vendored: git clone https://github.com/facebookresearch/mae)",
    )
    add("--rounds", type=int, default=5, help="alternating rounds of --steps for --official-mae (default: %(default)s)")
    add("--json", metavar="PATH", help="also write the settings, rows and comparisons as JSON")
    add("--markdown", action="store_true", help="print Markdown tables, ready for docs/benchmarks.md")
    args = parser.parse_args(argv)
    args.objectives = parse_list(args.objectives, list(OBJECTIVES), "objective", parser)
    args.presets = parse_list(args.presets, presets, "preset", parser)
    if args.device == "cuda" and not cuda:
        parser.error("--device cuda was asked for, but torch sees no CUDA device")
    if "mae" not in args.objectives and any(p in REFERENCES for p in args.presets):
        parser.error("the ref-* configurations measure MAE only; add mae to --objectives")
    if args.steps < 1 or args.warmup < 0 or (args.batch is not None and args.batch < 1):
        parser.error("--steps and --batch must be >= 1, --warmup >= 0")
    args.dtype = args.dtype or ("bf16" if args.device == "cuda" else "fp32")
    if args.rounds < 1:
        parser.error("--rounds must be >= 1")
    args.official_module = official_mae.load(args.official_mae) if args.official_mae else None
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    peak, size = peak_matmul_flops(args)
    meta = {"device": device_name(args.device), "threads": torch.get_num_threads(), "torch": torch.__version__}
    meta |= {"dtype": args.dtype, "compile": args.compile, "peak_matmul_flops": peak}
    compiled = "compiled" if args.compile else "eager"
    print(
        f"{meta['device']}, {meta['threads']} threads, torch {meta['torch']}, {args.dtype}, {compiled}; "
        f"peak matmul ({size}x{size} {args.dtype}): {si(peak)}FLOP/s\n",
        flush=True,
    )
    rows = []
    for name in args.presets:
        for objective in ["mae"] if name in REFERENCES else args.objectives:
            print(f"measuring {objective} on {name} ...", file=sys.stderr, flush=True)
            rows.append(measure_step(name, objective, args, peak))
            free_memory(args.device)
    official = []
    for name in args.presets if args.official_mae else []:
        print(f"timing our mae beside the official MAE on {name} ...", file=sys.stderr, flush=True)
        official.append(beside_official(name, args))
        free_memory(args.device)
    speedups = []
    for name in (p for p in args.presets if p not in REFERENCES):
        print(f"measuring the masked encoder speed-up on {name} ...", file=sys.stderr, flush=True)
        speedups.append(measure_encoder_speedup(name, args))
    ratios = mug_over_mae(rows)
    print(report(rows, speedups, ratios, official, args), flush=True)
    if args.json:
        out = {
            **meta,
            "rows": [asdict(r) for r in rows],
            "mug_over_mae": ratios,
            "beside_official_mae": [asdict(o) for o in official],
            "encoder_speedup": [asdict(s) for s in speedups],
        }
        with open(args.json, "w") as file:
            json.dump(out, file, indent=2)


if __name__ == "__main__":
    main()
