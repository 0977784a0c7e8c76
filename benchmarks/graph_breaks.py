"""Where `torch.compile` cuts each objective's training step into pieces (issue 14's device-independent check).

For each objective, `torch._dynamo.explain` traces the forward pass and the loss on a batch like the benchmarks'
(captions BOS, 6 to 20 word pieces, EOS, padding) and reports the graphs, the graph breaks and where each break
is (the backward pass is derived from the same graphs). A break costs a return to Python, and on a GPU often a
host sync; a step without breaks can be compiled whole.
Runs on the CPU: what breaks a graph does not depend on the device.

    .venv/bin/python benchmarks/graph_breaks.py --preset tiny
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
import torch._dynamo as dynamo
from train_step import make_batch  # benchmarks/ is on sys.path when this file runs as a script

from mug.config import OBJECTIVES, build_config, preset_names
from mug.models import build_model


def where(reason) -> str:
    """file:line of the user code a break happened in."""
    if not reason.user_stack:
        return "?"
    frame = reason.user_stack[-1]
    return f"{Path(frame.filename).name}:{frame.lineno}"


def census(objective: str, preset: str, batch_size: int) -> tuple[int, int, list[str], float]:
    """(graphs, graph breaks, distinct 'file:line: reason' of the breaks, seconds to trace) of one step's loss."""
    model = build_model(build_config(preset, overrides={"objective": {"name": objective}}))
    batch = make_batch(model, batch_size, "cpu")

    # As the training loop passes it: a tensor, so a new count each step neither recompiles nor waits.
    tokens = batch.get("tokens")
    per_batch = (tokens[:, 1:] != model.cfg.text.pad_id).sum(dtype=torch.float64) if tokens is not None else None

    def step(batch: dict[str, torch.Tensor], tokens_per_batch: torch.Tensor | None) -> torch.Tensor:
        return model(batch, tokens_per_batch=tokens_per_batch)["loss"]

    dynamo.reset()
    start = time.perf_counter()
    explained = dynamo.explain(step)(batch, per_batch)
    seconds = time.perf_counter() - start
    reasons = sorted({f"{where(r)}: {str(r.reason).splitlines()[0].strip()}" for r in explained.break_reasons})
    return explained.graph_count, explained.graph_break_count, reasons, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="tiny", choices=preset_names())
    parser.add_argument("--objectives", default=",".join(OBJECTIVES), help="comma-separated")
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args()
    print(f"| objective ({args.preset}) | graphs | graph breaks | where |\n|---|---:|---:|---|")
    for objective in args.objectives.split(","):
        graphs, breaks, reasons, _ = census(objective, args.preset, args.batch_size)
        print(f"| {objective} | {graphs} | {breaks} | {'<br>'.join(reasons) or '-'} |")
    print(f"\ntorch {torch.__version__}")


if __name__ == "__main__":
    main()
