"""The training step: the host never waits for the device inside it, and a non-finite loss or gradient stops the
run with the weights of the last good step, without a per-step host read."""

import sys

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from mug.data.synthetic.corpus import synthesize_corpus
from mug.train import loop
from mug.train.config import load_train_config
from mug.train.guard import NonFiniteGuard
from mug.train.loop import TrainingDiverged, train
from tests.test_train import micro_settings

# What makes the host wait for the device: reading a value, or an output whose shape depends on the data.
WAITS = {
    torch.ops.aten._local_scalar_dense.default,
    torch.ops.aten.nonzero.default,
    torch.ops.aten.masked_select.default,
}
# What `_train` may call that waits: reading the step's figures, checkpoints, samples, the set-up, the loader.
READS = {"_read", "_save", "_sample", "_finish", "set_up", "next"}


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> str:
    root = tmp_path_factory.mktemp("web")
    synthesize_corpus(root, train_samples=64, eval_samples=0, shard_size=64, image_size=32, progress=False)
    return str(root / "train" / "00000.tar")


def _call_in_train() -> str | None:
    """The function `_train` called that led to this point ('_train' for its own code), or None outside it;
    on the CPU, MUG's caption loss counts apart (it selects its real targets there)."""
    frame, callee, in_caption_loss = sys._getframe(2), None, False
    while frame is not None:
        if frame.f_code is loop._train.__code__:
            if in_caption_loss:
                return "caption_loss"
            return callee.f_code.co_name if callee is not None else "_train"
        in_caption_loss |= frame.f_code.co_name == "caption_loss"
        if not frame.f_code.co_name.startswith("<"):  # a comprehension's frame is its caller's code
            callee = frame
        frame = frame.f_back
    return None


class HostWaits(TorchDispatchMode):
    """Records the calls of `_train` that made the host wait, by the function `_train` called."""

    def __init__(self):
        super().__init__()
        self.by_call: dict[str, int] = {}

    def record(self) -> None:
        call = _call_in_train()
        if call is not None:
            self.by_call[call] = self.by_call.get(call, 0) + 1

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        boolean_index = func is torch.ops.aten.index.Tensor and any(
            isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in args[1]
        )
        if func in WAITS or boolean_index:
            self.record()
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("objective", ["mae", "simclr", "clip", "mug"])
def test_the_step_never_makes_the_host_wait_outside_its_reads(objective, shards, tmp_path, monkeypatch):
    waits = HostWaits()
    tolist = torch.Tensor.tolist

    def recorded_tolist(tensor):
        waits.record()
        return tolist(tensor)

    monkeypatch.setattr(torch.Tensor, "tolist", recorded_tolist)
    settings = micro_settings(objective, data=[shards], out=str(tmp_path), steps=6, log_every=3, ckpt_every=100)
    with waits:
        train(load_train_config(overrides=settings))
    # Nothing in forward, loss, backward, clip or update. MUG's caption loss selects its real targets in the CPU's
    # eager step only, where there is no device to wait for (its compiled path: test_caption_loss_compiles_whole).
    assert set(waits.by_call) - {"caption_loss"} <= READS, waits.by_call
    assert "caption_loss" not in waits.by_call or objective == "mug"
    assert waits.by_call.get("_read", 0) >= 2  # the reads at steps 3 and 6 were seen: the probe works


def _model_and_guard(fused: bool = True):
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1, fused=fused)
    return model, optimizer, NonFiniteGuard(optimizer, torch.amp.GradScaler("cpu", enabled=False), torch.device("cpu"))


def _step(model, guard, step: int, poison: float = 1.0) -> None:
    loss = model(torch.ones(4, 3)).pow(2).mean() * poison
    loss.backward()
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), 1e9)
    guard.observe(loss.detach(), grad_norm, step)
    guard.step()
    guard.optimizer.zero_grad(set_to_none=True)


def test_a_non_finite_step_skips_its_update_and_every_later_one_on_the_device():
    model, optimizer, guard = _model_and_guard()
    assert not guard.reads_every_step  # the fused kernel reads the flag: the host need not
    _step(model, guard, 1)
    good = [p.detach().clone() for p in model.parameters()]
    moments = [optimizer.state[p]["exp_avg"].clone() for p in model.parameters()]
    _step(model, guard, 2, poison=float("nan"))
    _step(model, guard, 3)  # a finite step after the bad one is skipped too: the run is going to stop
    assert all(torch.equal(p, g) for p, g in zip(model.parameters(), good, strict=True))
    assert all(torch.equal(optimizer.state[p]["exp_avg"], m) for p, m in zip(model.parameters(), moments, strict=True))
    assert guard.failure() == "the loss is nan at step 2"


def test_the_guard_names_a_non_finite_gradient_and_reads_on_the_host_without_a_fused_optimiser():
    model, _, guard = _model_and_guard(fused=False)
    assert guard.reads_every_step
    _step(model, guard, 1)
    before = [p.detach().clone() for p in model.parameters()]
    model.weight.register_hook(lambda g: g * float("inf"))
    _step(model, guard, 2)
    assert all(torch.equal(p, b) for p, b in zip(model.parameters(), before, strict=True))
    assert guard.failure().startswith("the gradient norm is ") and guard.failure().endswith("at step 2")


def test_a_diverging_run_without_checkpoints_stops_at_its_next_read_naming_the_first_bad_step(shards, tmp_path):
    settings = micro_settings(
        "mae", data=[shards], out=str(tmp_path), steps=40, base_lr=1e6, warmup_steps=0, clip_grad=0.0, log_every=20
    )
    settings["ckpt_every"] = 1000
    with pytest.raises(TrainingDiverged, match=r"the (loss|gradient norm) is (nan|inf) at step \d+; .*none yet"):
        train(load_train_config(overrides=settings))
