import json
import re

import pytest

from mug.config import ConfigError, ModelConfig, build_config, parse_overrides, preset_names


@pytest.mark.parametrize("name", ["tiny", "small", "base"])
def test_presets_load_and_validate(name):
    cfg = build_config(name)
    assert cfg.encoder.img_size % cfg.encoder.patch_size == 0


def test_base_preset_is_vit_b16_with_mae_decoder():
    cfg = build_config("base")
    assert (cfg.encoder.img_size, cfg.encoder.patch_size, cfg.encoder.width, cfg.encoder.depth) == (224, 16, 768, 12)
    assert (cfg.pixel_decoder.width, cfg.pixel_decoder.depth) == (512, 8)
    assert cfg.text.depth <= 6  # a shallow caption decoder, as the design asks


def test_preset_names_are_data():
    assert {"tiny", "small", "base"} <= set(preset_names())


@pytest.mark.parametrize(
    "overrides, field",
    [
        ({"encoder": {"img_size": 30}}, "encoder.img_size"),
        ({"objective": {"mask_ratio": 1.0}}, "objective.mask_ratio"),
        ({"objective": {"mask_ratio": -0.1}}, "objective.mask_ratio"),
        ({"objective": {"name": "byol"}}, "objective.name"),
        ({"encoder": {"width": 190}}, "encoder.width"),
        ({"text": {"context_length": 2}}, "text.context_length"),
        ({"encoder": {"depth": 0}}, "encoder.depth"),
        ({"objective": {"pool": "max"}}, "objective.pool"),
        ({"encoder": {"depht": 3}}, "encoder.depht"),
        ({"encoder": {"depth": "deep"}}, "encoder.depth"),
        ({"objective": {"w_rec": 0, "w_cap": 0}}, "objective.w_rec"),
        ({"text": {"pad_id": 99999}}, "text.pad_id"),
        ({"objective": {"mask_ratio": 0.0}}, "objective.mask_ratio 0.0 masks none of the 64 patches"),
        ({"objective": {"name": "mae", "mask_ratio": 0.0}}, "objective.mask_ratio 0.0 masks none"),
        ({"objective": {"name": "mae", "w_rec": 0}}, "objective.w_rec is 0"),
        ({"encoder": 3}, "encoder must be a mapping, got int"),
        ({"encoder": {"depth": {"x": 3}}}, "encoder.depth must be an integer, got {'x': 3}"),
    ],
)
def test_bad_config_names_the_field(overrides, field):
    with pytest.raises(ConfigError, match=re.escape(field)):
        build_config("tiny", overrides=overrides)


def test_only_objectives_that_reconstruct_need_masked_patches():
    for name in ("simclr", "clip"):
        assert build_config("tiny", overrides={"objective": {"name": name, "mask_ratio": 0.0}})
    captions_only = {"objective": {"name": "mug", "mask_ratio": 0.0, "w_rec": 0}}
    assert build_config("tiny", overrides=captions_only).objective.mask_ratio == 0.0


def test_unknown_preset_lists_the_known_ones():
    with pytest.raises(ConfigError, match="preset 'huge' is unknown.*tiny"):
        build_config("huge")


def test_file_then_overrides_win_field_by_field(tmp_path):
    path = tmp_path / "cfg.yaml"
    path.write_text("encoder:\n  depth: 3\nobjective:\n  name: mae\n")
    cfg = build_config("tiny", file=path, overrides=parse_overrides(["encoder.depth=4", "objective.w_rec=0.5"]))
    assert (cfg.encoder.depth, cfg.objective.name, cfg.objective.w_rec) == (4, "mae", 0.5)
    assert cfg.encoder.width == 192  # untouched preset value


def test_config_round_trips_through_json():
    cfg = build_config("small", overrides={"objective": {"name": "clip"}})
    assert ModelConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg


def test_missing_config_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="nope.yaml does not exist"):
        build_config("tiny", file=tmp_path / "nope.yaml")


def test_override_without_equals_is_rejected():
    with pytest.raises(ConfigError, match="encoder.depth"):
        parse_overrides(["encoder.depth"])


def test_override_inside_a_value_set_earlier_is_named():
    with pytest.raises(ConfigError, match="'encoder.depth.x=2' sets a field of encoder.depth, which an earlier"):
        parse_overrides(["encoder.depth=3", "encoder.depth.x=2"])


@pytest.mark.parametrize("text, problem", [("- a\n- b\n", "must hold a mapping of settings, got list"),
                                           ("a: [\n", "is not valid YAML")])  # fmt: skip
def test_config_file_that_is_not_a_mapping_is_named(tmp_path, text, problem):
    path = tmp_path / "cfg.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=f"config file {path} {problem}"):
        build_config("tiny", file=path)
    with pytest.raises(ConfigError, match=f"config file {tmp_path} is a directory"):
        build_config("tiny", file=tmp_path)
