"""SimCLR and CLIP under DDP contrast against the global batch: two gloo ranks on the CPU, each holding half the
batch, give the loss and the (all-reduced) gradients of one process on the whole batch."""

import os
import socket

import pytest
import torch
import torch.multiprocessing as mp
from torch.nn.parallel import DistributedDataParallel

from mug.models import build_model
from mug.models.objectives import clip_loss, nt_xent
from mug.train.distributed import gather_with_local_grad, init_distributed, shutdown
from tests.conftest import micro_config, random_batch

pytestmark = pytest.mark.slow  # make test-fast skips this module

CONTRASTIVE = ("simclr", "clip")
BATCH = 8  # the global batch; each of the two ranks holds 4


def _loss_and_grads(objective: str, batch: dict[str, torch.Tensor], ddp: bool = False):
    """The loss and every parameter's gradient of a fresh model (the same weights on every call)."""
    torch.manual_seed(0)
    net = build_model(micro_config(objective))
    forward = DistributedDataParallel(net) if ddp else net
    loss = forward(batch)["loss"]
    loss.backward()
    return loss.detach(), {name: p.grad.clone() for name, p in net.named_parameters()}


def _rank(rank: int, port: int, out: str) -> None:
    """One of two ranks: the project's own `init_distributed` joins the group torchrun would describe."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank))
    os.environ["WORLD_SIZE"] = "2"
    torch.set_num_threads(1)
    env = init_distributed("cpu")
    try:
        results = {}
        for objective in CONTRASTIVE:
            half = {k: v.chunk(2)[rank] for k, v in random_batch(micro_config(objective), BATCH).items()}
            results[objective] = _loss_and_grads(objective, half, ddp=True)
        torch.save(results, os.path.join(out, f"rank{rank}.pt"))
    finally:
        shutdown(env)


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory) -> list[dict]:
    out = tmp_path_factory.mktemp("ddp")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_rank, args=(port, str(out)), nprocs=2)
    return [torch.load(out / f"rank{rank}.pt") for rank in (0, 1)]


@pytest.mark.parametrize("objective", CONTRASTIVE)
def test_two_ranks_with_half_a_batch_each_match_one_process_on_the_whole_batch(objective, two_ranks):
    """Float32 (the losses run in float32 by design): what differs is only the order of sums (DDP adds the ranks'
    halves) and kernel blocking for 4 vs 8 rows, a few ulps of values of order 1."""
    batch = random_batch(micro_config(objective), BATCH)
    loss, grads = _loss_and_grads(objective, batch)
    for rank_loss, rank_grads in (r[objective] for r in two_ranks):
        assert torch.allclose(rank_loss, loss, rtol=1e-5, atol=1e-6)
        assert rank_grads.keys() == grads.keys()
        for name, grad in grads.items():
            assert torch.allclose(rank_grads[name], grad, rtol=1e-5, atol=1e-6), name
    half_loss, _ = _loss_and_grads(objective, {k: v[: BATCH // 2] for k, v in batch.items()})
    assert not torch.allclose(half_loss, loss, rtol=1e-2)  # what each rank computed before: its own half only


@pytest.mark.parametrize("objective", CONTRASTIVE)
def test_one_process_computes_exactly_the_loss_on_its_own_batch(objective):
    """Without a process group the gather is the identity: loss and gradients bit for bit as before it."""
    cfg = micro_config(objective)
    batch = random_batch(cfg, BATCH)
    loss, grads = _loss_and_grads(objective, batch)
    torch.manual_seed(0)
    model = build_model(cfg)
    if objective == "simclr":
        z1, z2 = model.embed(torch.cat([batch["image"], batch["image2"]])).chunk(2)
        direct = nt_xent(z1, z2, cfg.objective.simclr_temperature)
    else:
        scale = model.logit_scale.exp()
        direct = clip_loss(model.embed_image(batch["image"]), model.embed_text(batch["tokens"]), scale)
    direct.backward()
    assert torch.equal(direct, loss)
    assert all(torch.equal(p.grad, grads[name]) for name, p in model.named_parameters())
    x = torch.ones(3)
    assert gather_with_local_grad(x) is x
