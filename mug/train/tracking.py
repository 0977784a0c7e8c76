"""Where a run's figures go: history.jsonl (always, for reports and resumes) and Weights & Biases (offline by
default, so a run needs no account; `wandb sync` uploads it later). W&B is imported only when used."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from PIL import Image

from mug.errors import writing
from mug.history import HISTORY, write_history

log = logging.getLogger("mug.train")


class Tracker:
    def __init__(self, out: Path, mode: str, project: str, name: str | None, config: dict[str, Any], history=None):
        self.path = out / HISTORY
        self.history: list[dict[str, float]] = list(history or [])
        self.run = None
        if os.environ.get("WANDB_MODE") == "disabled":
            mode = "disabled"
        if mode != "disabled":
            import wandb

            self.run = wandb.init(
                project=project, name=name, config=config, mode=mode, dir=str(out), resume="allow", reinit=True
            )
            log.info("W&B run %s (%s mode) in %s", self.run.id, mode, out / "wandb")

    def log(self, row: dict[str, float]) -> None:
        self.history.append(row)
        with writing("the training history"), self.path.open("a") as f:
            f.write(json.dumps(row) + "\n")
        if self.run is not None:
            self.run.log({f"train/{k}": v for k, v in row.items() if k != "step"}, step=int(row["step"]))

    def rewrite(self) -> None:
        """history.jsonl as the history in memory (after a resume dropped rows past the checkpoint)."""
        with writing("the training history"):
            write_history(self.path, self.history)

    def log_samples(self, step: int, strip: Image.Image, caption: str | None, reference: str | None) -> None:
        if self.run is None:
            return
        import wandb

        text = f"generated: {caption}\nreference: {reference}" if caption is not None else None
        self.run.log({"samples/reconstruction": wandb.Image(strip, caption=text)}, step=step)

    def finish(self, summary: dict[str, Any]) -> None:
        if self.run is not None:
            self.run.summary.update(summary)
            self.run.finish()
