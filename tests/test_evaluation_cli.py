"""`mug evaluate` end to end on a small synthetic corpus, for a checkpoint of each objective."""

import json
import re
import tarfile

import pytest
import torch

from mug.checkpoint import save_checkpoint
from mug.cli import main
from mug.data.synthetic.corpus import synthesize_corpus
from mug.evaluation.significance import read_outcomes
from mug.models import build_model
from mug.tokenizer import CaptionTokenizer
from tests.conftest import micro_config

LABELS = ("shape", "count", "relation", "colour", "size", "background", "texture")
POOLED = ("probe_cls", "probe_mean", "knn_cls", "knn_mean")
EXTRA = {
    "mae": {"recon/mse"},
    "simclr": set(),
    "clip": {"zero_shot/size", "zero_shot/colour", "zero_shot/shape"},
    "mug": {"recon/mse", "caption/perplexity", "caption/bleu4", "caption/cider"}
    | {"zero_shot/size", "zero_shot/colour", "zero_shot/shape"},
}
ARGS = ["--max-samples", "160", "--batch-size", "64"]


@pytest.fixture(autouse=True)
def one_thread():
    """On two shared cores torch's second thread mostly waits for the first: greedy decoding ran 100x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    out = tmp_path_factory.mktemp("corpus")
    synthesize_corpus(out, train_samples=0, eval_samples=160, shard_size=80, image_size=32, progress=False)
    captions = []
    for shard in sorted((out / "eval").glob("*.tar")):
        with tarfile.open(shard) as tar:
            captions += [tar.extractfile(m).read().decode() for m in tar.getmembers() if m.name.endswith(".txt")]
    tokenizer = CaptionTokenizer.train(captions, vocab_size=128, min_frequency=1)
    return out / "eval", tokenizer


def _checkpoint(path, name, tokenizer, history=True):
    cfg = micro_config(name, text={"vocab_size": tokenizer.vocab_size, "pad_id": tokenizer.pad_id})
    torch.manual_seed(1)  # not the floor's seed (0): an untrained model that is not the floor itself
    save_checkpoint(path, build_model(cfg), tokenizer)
    if history:
        rows = [{"step": s, "loss": 2.0 / (s + 1), "loss_rec": 1.0 / (s + 1), "lr": 1e-4} for s in range(0, 50, 5)]
        (path / "history.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"step": 5')  # cut off
    return path


@pytest.mark.parametrize("name", ["mae", "simclr", "clip", "mug"])
@pytest.mark.slow
def test_evaluate_writes_metrics_confusion_and_a_standalone_report(tmp_path, corpus, name, capsys):
    data, tokenizer = corpus
    checkpoint = _checkpoint(tmp_path / "ckpt", name, tokenizer, history=name != "simclr")
    out = tmp_path / "eval"
    captions = ["--masked-samples", "100"] if name == "mug" else []  # mug's masked pass reads 100 images
    assert main(["evaluate", str(checkpoint), "--data", str(data), "--out", str(out), *ARGS, *captions]) == 0
    printed = capsys.readouterr().out
    assert "probe_cls/shape" in printed and "floor/probe_cls/shape" in printed
    assert printed.splitlines()[-1].endswith("(95%), not distinguishable from the random-init floor")

    metrics = json.loads((out / "metrics.json").read_text())
    probes = {f"{m}/{label}" for m in POOLED for label in LABELS} | {f"digits/{m}" for m in POOLED}
    headline = {f"probe_cls/{label}" for label in LABELS} | {"digits/probe_cls"}
    intervals = {k + end for k in headline for end in ("_low", "_high")}
    lifts = {f"lift/{k}{end}" for k in headline for end in ("", "_low", "_high")}
    score = {f"transfer/score{end}" for end in ("", "_low", "_high")}
    expected = probes | {f"floor/{k}" for k in probes} | intervals | lifts | score | EXTRA[name]
    assert set(metrics) == expected
    for key in headline:
        assert metrics[key + "_low"] <= metrics[key] <= metrics[key + "_high"]
        assert metrics[f"lift/{key}"] == pytest.approx(metrics[key] - metrics[f"floor/{key}"])
    # An untrained model (initialised from another seed than the floor's) is indistinguishable from the floor.
    assert metrics["transfer/score_low"] < 0 < metrics["transfer/score_high"]
    assert abs(metrics["transfer/score"]) < 0.3
    for key, value in metrics.items():
        if key.startswith(("probe", "knn", "digits", "zero_shot", "caption/bleu4", "floor/")):
            assert 0.0 <= value <= 1.0, key
    assert metrics["digits/probe_cls"] > 0.3  # chance is 0.1: even random ViT features tell digits apart
    if "recon/mse" in metrics:
        assert 0 < metrics["recon/mse"] < 10
    if name == "mug":
        assert metrics["caption/perplexity"] >= 1.0 and metrics["caption/cider"] >= 0.0

    matrices = json.loads((out / "confusion.json").read_text())
    shape = matrices["probe_cls/shape"]
    assert len(shape["matrix"]) == len(shape["labels"]) and all(len(r) == len(shape["labels"]) for r in shape["matrix"])
    assert sum(map(sum, shape["matrix"])) == 80  # the held-out half
    if "zero_shot/shape" in matrices:  # clip scores every held-out image; mug those among its first 100
        scored = sum(map(sum, matrices["zero_shot/shape"]["matrix"]))
        assert scored == 80 if name == "clip" else 30 < scored < 70
    outcomes = read_outcomes(out / "outcomes.json")
    assert list(outcomes) == [*LABELS, "digits"] and len(outcomes["shape"].keys) == 80
    assert outcomes["shape"].model.mean() == pytest.approx(metrics["probe_cls/shape"])
    assert outcomes["digits"].floor.mean() == pytest.approx(metrics["floor/digits/probe_cls"])

    page = (out / "report.html").read_text()
    sources = re.findall(r'src="([^"]*)"', page)
    assert sources and all(s.startswith("data:image/png;base64,") for s in sources)
    assert "<link" not in page and "<script" not in page
    assert ("no training history" in page) == (name == "simclr")
    assert ("<h2>Reconstructions</h2>" in page) == (name in ("mae", "mug"))
    assert ("<h2>Captions</h2>" in page) == (name == "mug")
    assert "not distinguishable from the random-init floor" in page and "random-init floor" in page


def _one_line_error(capsys) -> str:
    """The error, checked to be one line and the last thing written (progress bars may come before it)."""
    lines = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in lines if "error" in line]
    assert len(errors) == 1 and lines[-1].startswith("mug evaluate: error: "), lines
    return errors[0]


def test_bad_checkpoints_and_empty_data_are_one_line_errors(tmp_path, corpus, capsys):
    data, tokenizer = corpus
    out = str(tmp_path / "eval")
    checkpoint = _checkpoint(tmp_path / "ckpt", "mae", tokenizer)
    (checkpoint / "model.safetensors").unlink()
    assert main(["evaluate", str(checkpoint), "--data", str(data), "--out", out]) == 2
    assert "model.safetensors" in _one_line_error(capsys)

    checkpoint = _checkpoint(tmp_path / "ckpt", "mae", tokenizer)
    config = json.loads((checkpoint / "config.json").read_text())
    config["model"]["encoder"]["depth"] = 3
    (checkpoint / "config.json").write_text(json.dumps(config))
    assert main(["evaluate", str(checkpoint), "--data", str(data), "--out", out]) == 2
    assert "do not match" in _one_line_error(capsys)

    checkpoint = _checkpoint(tmp_path / "ckpt", "mug", tokenizer)
    (checkpoint / "tokenizer.json").unlink()
    assert main(["evaluate", str(checkpoint), "--data", str(data), "--out", out]) == 2
    assert "tokenizer.json" in _one_line_error(capsys)

    checkpoint = _checkpoint(tmp_path / "ckpt", "simclr", tokenizer)
    empty = tmp_path / "empty.tar"
    tarfile.open(empty, "w").close()
    assert main(["evaluate", str(checkpoint), "--data", str(empty), "--out", out]) == 2
    assert "no samples" in (err := _one_line_error(capsys)) and str(empty) in err
    assert main(["evaluate", str(checkpoint), "--data", str(tmp_path / "nowhere"), "--out", out]) == 2
    assert "nowhere" in _one_line_error(capsys)
