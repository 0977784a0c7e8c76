import json

import pytest
import torch

from mug.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from mug.models import build_model
from tests.conftest import micro_config, random_batch


@pytest.mark.parametrize("objective", ["mug", "clip"])
def test_round_trip_gives_identical_outputs(tmp_path, tokenizer, objective):
    cfg = micro_config(objective, text={"vocab_size": tokenizer.vocab_size})
    model = build_model(cfg).eval()
    save_checkpoint(tmp_path / "ckpt", model, tokenizer, {"steps": 7})
    loaded, loaded_tok, meta = load_checkpoint(tmp_path / "ckpt", need_tokenizer=True)
    assert meta == {"steps": 7} and loaded_tok.vocab_size == tokenizer.vocab_size
    batch = random_batch(cfg)
    noise = {"noise": torch.rand(4, cfg.encoder.num_patches)} if objective == "mug" else {}
    with torch.no_grad():
        assert torch.equal(model(batch, **noise)["loss"], loaded(batch, **noise)["loss"])
    if objective == "mug":  # the tied head stays tied after loading
        assert loaded.caption_decoder.head.weight is loaded.caption_decoder.token_embed.weight


def test_checkpoint_holds_no_pickles(tmp_path):
    save_checkpoint(tmp_path / "ckpt", build_model(micro_config("mae")))
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == ["config.json", "model.safetensors"]
    json.loads((tmp_path / "ckpt" / "config.json").read_text())


def test_overwrite_is_atomic_and_leaves_no_temporaries(tmp_path):
    first = build_model(micro_config("mae"))
    save_checkpoint(tmp_path / "ckpt", first, metadata={"n": 1})
    save_checkpoint(tmp_path / "ckpt", build_model(micro_config("mae")), metadata={"n": 2})
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt"]
    assert load_checkpoint(tmp_path / "ckpt")[2] == {"n": 2}


def test_failed_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    save_checkpoint(tmp_path / "ckpt", build_model(micro_config("mae")), metadata={"n": 1})

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("mug.checkpoint.save_model", disk_full)
    with pytest.raises(OSError):
        save_checkpoint(tmp_path / "ckpt", build_model(micro_config("mae")), metadata={"n": 2})
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt"]
    assert load_checkpoint(tmp_path / "ckpt")[2] == {"n": 1}


def test_missing_directory_and_files_are_named(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nothing")
    save_checkpoint(tmp_path / "ckpt", build_model(micro_config("mae")))
    with pytest.raises(CheckpointError, match="has no tokenizer.json"):
        load_checkpoint(tmp_path / "ckpt", need_tokenizer=True)
    (tmp_path / "ckpt" / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="has no model.safetensors"):
        load_checkpoint(tmp_path / "ckpt")


def test_config_that_does_not_match_the_weights_is_refused(tmp_path):
    save_checkpoint(tmp_path / "ckpt", build_model(micro_config("mae")))
    path = tmp_path / "ckpt" / "config.json"
    data = json.loads(path.read_text())
    data["model"]["encoder"]["depth"] = 3
    path.write_text(json.dumps(data))
    with pytest.raises(CheckpointError, match="weights do not match config.json"):
        load_checkpoint(tmp_path / "ckpt")
    data["model"]["objective"]["name"] = "byol"
    path.write_text(json.dumps(data))
    with pytest.raises(CheckpointError, match="objective.name 'byol' is unknown"):
        load_checkpoint(tmp_path / "ckpt")
