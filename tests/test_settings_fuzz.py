"""Every setting `mug pretrain` takes, fed malformed values by hypothesis: the command line either accepts the
value or refuses it with one line that names the setting (exit 2). Nothing ends in a traceback."""

import dataclasses
import typing

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mug.cli import build_parser, main
from mug.commands.pretrain import train_config_from_args
from mug.config import ModelConfig
from mug.errors import UserError
from mug.train.config import TrainConfig

pytestmark = pytest.mark.slow  # make test-fast skips this module

TRAIN_KEYS = [f.name for f in dataclasses.fields(TrainConfig) if f.name != "model"]
MODEL_KEYS = [
    f"model.{section}.{field.name}"
    for section, kind in typing.get_type_hints(ModelConfig).items()
    for field in dataclasses.fields(kind)
]
MALFORMED = st.one_of(
    st.sampled_from(["", "-1", "0", "1e999", ".nan", "-.inf", "null", "true", "[", "{a", "@x", "[]", "[1, 2]",
                     "[0.9, 2]", "[-1, 0.5]", "{a: 1}", "!!python/name:os.system", "1.5", "99999999999999999999"]),
    st.text(max_size=12),
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
    st.floats().map(repr),
    st.lists(st.floats(allow_nan=False), max_size=3).map(str),
)  # fmt: skip


def _pretrain_argv(key: str, value: str) -> list[str]:
    return ["pretrain", "--data", "shards/{00000..00009}.tar", "--set", f"{key}={value}"]


@settings(max_examples=600, deadline=None)
@given(key=st.sampled_from(TRAIN_KEYS + MODEL_KEYS), value=MALFORMED)
def test_any_value_of_any_setting_is_accepted_or_refused_in_one_line_naming_it(key, value):
    try:
        cfg = train_config_from_args(build_parser().parse_args(_pretrain_argv(key, value)))
    except UserError as err:
        message = str(err)
        assert "\n" not in message and key.rsplit(".", 1)[-1] in message, (key, value, message)
        return
    cfg.model_config()  # what training builds first: a setting that passed must build


def test_the_command_line_reports_a_value_that_is_no_yaml_in_one_line(capsys):
    assert main(_pretrain_argv("steps", "[1,")) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == [
        "mug pretrain: error: --set steps=[1,: the value is not valid YAML (expected the node content, but found "
        "'<stream end>')"
    ], lines
