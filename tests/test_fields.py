"""One set of rules for every config (mug.fields): the same value is taken or refused alike by the model,
training, loader and launch configs, with one error format naming the field."""

import pytest

from mug.config import ConfigError, build_config
from mug.data.loading.loader import LoaderConfig
from mug.fields import typed
from mug.train.config import load_train_config
from mug.train.launch_spec import LaunchSpec


def model_depth(value):
    return build_config("tiny", overrides={"encoder": {"depth": value}}).encoder.depth


def train_steps(value):
    return load_train_config(overrides={"data": ["x.tar"], "steps": value}).steps


def loader_batch(value):
    cfg = LoaderConfig(urls="x.tar", batch_size=value, image_size=32)
    cfg.validate()
    return cfg.batch_size


def launch_nodes(value):
    spec = LaunchSpec(scheduler="kubernetes", image="mug:latest", nodes=value)
    spec.validate()
    return spec.nodes


SETTERS = {"encoder.depth": model_depth, "steps": train_steps, "loader.batch_size": loader_batch, "nodes": launch_nodes}


@pytest.mark.parametrize("field", SETTERS)
def test_every_config_takes_a_whole_float_as_an_integer(field):
    """What a pipeline's dict parameter delivers: its numbers cross as doubles."""
    assert SETTERS[field](4.0) == 4 and isinstance(SETTERS[field](4.0), int)


@pytest.mark.parametrize("field", SETTERS)
@pytest.mark.parametrize("value", [4.5, True, "4", None, float("nan")])
def test_every_config_refuses_what_is_not_an_integer_naming_the_field(field, value):
    with pytest.raises(ConfigError, match=rf"^{field} must be an integer, got {value!r}$".replace("(", r"\(")):
        SETTERS[field](value)


@pytest.mark.parametrize(
    ("value", "hint", "expected"),
    [
        (1, float, 1.0),
        ([0.9, 0.95], tuple[float, float], (0.9, 0.95)),
        ([1, 2.0], list[int], [1, 2]),
        (None, int | None, None),
        (["image", "tokens"], tuple[str, ...], ("image", "tokens")),
        ({"a": 1.0}, dict[str, int], {"a": 1}),
    ],
)
def test_typed_normalises_what_it_takes(value, hint, expected):
    result = typed("x", value, hint)
    assert result == expected and type(result) is type(expected)


@pytest.mark.parametrize(
    ("value", "hint", "message"),
    [
        (float("inf"), float, "x must be a finite number, got inf"),
        ([0.9], tuple[float, float], "x must be 2 numbers, got [0.9]"),
        ("yes", bool, "x must be true or false, got 'yes'"),
        (3, str | None, "x must be a string or null, got 3"),
        ([1, "a"], list[int], "x must be a list of integers, got [1, 'a']"),
    ],
)
def test_typed_names_the_field_and_what_it_wants(value, hint, message):
    with pytest.raises(ConfigError) as caught:
        typed("x", value, hint)
    assert str(caught.value) == message
