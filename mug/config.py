"""Model configuration: dataclasses with validation, presets stored as JSON data.

Every field can be set from a preset, a YAML/JSON file or `key.sub=value` overrides; `validate()` names the bad
field in one sentence, so a typo in a pipeline parameter fails at submission time, not mid-run.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from mug.errors import ConfigError
from mug.fields import merge

OBJECTIVES = ("mae", "mug", "simclr", "clip")
POOLS = ("cls", "mean")
MAX_SIZE = 1 << 20  # the most any size of the model (image side, width, depth, vocabulary, ...) may be


@dataclass
class EncoderConfig:
    """ViT encoder; names follow timm's `VisionTransformer` so the weights load there."""

    img_size: int = 224
    patch_size: int = 16
    in_chans: int = 3
    width: int = 768
    depth: int = 12
    heads: int = 12
    mlp_ratio: float = 4.0
    drop_path: float = 0.0

    @property
    def grid_size(self) -> int:
        return self.img_size // self.patch_size

    @property
    def num_patches(self) -> int:
        return self.grid_size**2


@dataclass
class PixelDecoderConfig:
    """MAE's pixel decoder (8 blocks x 512 for ViT-B)."""

    width: int = 512
    depth: int = 8
    heads: int = 16
    mlp_ratio: float = 4.0
    norm_pix_loss: bool = True


@dataclass
class TextConfig:
    """Caption decoder (MUG) or text encoder (CLIP); vocabulary and ids come from the tokenizer."""

    vocab_size: int = 30522
    pad_id: int = 0
    context_length: int = 32
    width: int = 512
    depth: int = 4
    heads: int = 8
    mlp_ratio: float = 4.0
    drop_path: float = 0.0
    tie_embeddings: bool = True


@dataclass
class ObjectiveConfig:
    """Which paradigm trains the encoder, and its loss knobs."""

    name: str = "mug"
    mask_ratio: float = 0.75
    w_rec: float = 1.0
    w_cap: float = 1.0
    pool: str = "cls"
    proj_dim: int = 256
    simclr_temperature: float = 0.1
    clip_init_temperature: float = 0.07
    clip_max_logit_scale: float = 100.0


@dataclass
class ModelConfig:
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    pixel_decoder: PixelDecoderConfig = field(default_factory=PixelDecoderConfig)
    text: TextConfig = field(default_factory=TextConfig)
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)

    def validate(self) -> ModelConfig:
        enc, obj = self.encoder, self.objective
        _positive(self, "encoder", ("img_size", "patch_size", "in_chans", "width", "depth", "heads"))
        _positive(self, "pixel_decoder", ("width", "depth", "heads"))
        _positive(self, "text", ("vocab_size", "context_length", "width", "depth", "heads"))
        if enc.img_size % enc.patch_size:
            raise ConfigError(
                f"encoder.img_size ({enc.img_size}) must be divisible by encoder.patch_size ({enc.patch_size})"
            )
        for section in ("encoder", "pixel_decoder", "text"):
            sub = getattr(self, section)
            if sub.width % sub.heads:
                raise ConfigError(f"{section}.width ({sub.width}) must be divisible by {section}.heads ({sub.heads})")
        if enc.width % 4:
            raise ConfigError(f"encoder.width ({enc.width}) must be divisible by 4 for 2-D sin-cos embeddings")
        if self.pixel_decoder.width % 4:
            raise ConfigError(f"pixel_decoder.width ({self.pixel_decoder.width}) must be divisible by 4")
        for section in ("encoder", "text"):
            rate = getattr(self, section).drop_path
            if not 0.0 <= rate < 1.0:
                raise ConfigError(f"{section}.drop_path must be in [0, 1), got {rate}")
        if obj.name not in OBJECTIVES:
            raise ConfigError(f"objective.name '{obj.name}' is unknown; choose one of {', '.join(OBJECTIVES)}")
        if not 0.0 <= obj.mask_ratio < 1.0:
            raise ConfigError(f"objective.mask_ratio must be in [0, 1), got {obj.mask_ratio}")
        visible = int(enc.num_patches * (1 - obj.mask_ratio))
        if obj.name in ("mae", "mug") and visible < 1:
            raise ConfigError(f"objective.mask_ratio {obj.mask_ratio} leaves no visible patch of {enc.num_patches}")
        if obj.w_rec < 0 or obj.w_cap < 0:
            raise ConfigError(f"objective.w_rec and objective.w_cap must be >= 0, got {obj.w_rec}, {obj.w_cap}")
        if obj.name == "mug" and obj.w_rec + obj.w_cap == 0:
            raise ConfigError("objective.w_rec and objective.w_cap are both 0: MUG would learn nothing")
        if obj.name == "mae" and obj.w_rec == 0:
            raise ConfigError("objective.w_rec is 0: MAE's only loss is the reconstruction, it would learn nothing")
        reconstructs = obj.name == "mae" or (obj.name == "mug" and obj.w_rec > 0)
        if reconstructs and visible == enc.num_patches:
            captions_only = " (or objective.w_rec=0 to learn from captions only)" if obj.name == "mug" else ""
            raise ConfigError(
                f"objective.mask_ratio {obj.mask_ratio} masks none of the {enc.num_patches} patches, and "
                f"{obj.name} learns by reconstructing masked ones: give a mask_ratio above 0{captions_only}"
            )
        if obj.pool not in POOLS:
            raise ConfigError(f"objective.pool '{obj.pool}' is unknown; choose one of {', '.join(POOLS)}")
        if obj.simclr_temperature <= 0 or obj.clip_init_temperature <= 0:
            raise ConfigError("objective.simclr_temperature and objective.clip_init_temperature must be > 0")
        if not 1 / obj.clip_init_temperature <= obj.clip_max_logit_scale:
            start = 1 / obj.clip_init_temperature
            raise ConfigError(
                f"objective.clip_max_logit_scale ({obj.clip_max_logit_scale}) must be at least 1 / "
                f"clip_init_temperature ({start:g}), the scale CLIP starts at"
            )
        if self.text.context_length < 3:
            raise ConfigError(f"text.context_length must be >= 3 (BOS, a token, EOS), got {self.text.context_length}")
        if not 0 <= self.text.pad_id < self.text.vocab_size:
            raise ConfigError(f"text.pad_id ({self.text.pad_id}) must be a token id below text.vocab_size")
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        return merge(cls(), data).validate()


def _positive(cfg: ModelConfig, section: str, names: tuple[str, ...]) -> None:
    """Sizes are positive, and below a bound no model reaches (a typo's extra digits are named, not allocated)."""
    sub = getattr(cfg, section)
    for name in names:
        if getattr(sub, name) <= 0:
            raise ConfigError(f"{section}.{name} must be positive, got {getattr(sub, name)}")
        if getattr(sub, name) > MAX_SIZE:
            raise ConfigError(f"{section}.{name} must be at most {MAX_SIZE:,}, got {getattr(sub, name):,}")


def preset_names() -> list[str]:
    return sorted(p.stem for p in resources.files("mug.presets").iterdir() if p.name.endswith(".json"))


def load_preset(name: str) -> dict[str, Any]:
    path = resources.files("mug.presets") / f"{name}.json"
    if not path.is_file():
        raise ConfigError(f"preset '{name}' is unknown; choose one of {', '.join(preset_names())}")
    return json.loads(path.read_text())


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """Turn ['encoder.depth=4', 'objective.name=mae'] into a nested dict (values parsed as YAML scalars)."""
    import yaml

    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override '{item}' must look like section.field=value")
        node = out
        *parents, leaf = key.split(".")
        for depth, part in enumerate(parents):
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                section = ".".join(parents[: depth + 1])
                raise ConfigError(f"override '{item}' sets a field of {section}, which an earlier one set to {node!r}")
        try:
            node[leaf] = yaml.safe_load(raw)
        except yaml.YAMLError as err:
            problem = getattr(err, "problem", None) or type(err).__name__
            shown = item if item.isprintable() else repr(item)  # a control character must not break the line
            raise ConfigError(f"--set {shown}: the value is not valid YAML ({problem})") from None
    return out


def build_config(
    preset: str = "tiny", file: str | Path | None = None, overrides: dict[str, Any] | None = None
) -> ModelConfig:
    """Preset, then file, then overrides: the later wins field by field."""
    cfg = merge(ModelConfig(), load_preset(preset))
    if file is not None:
        cfg = merge(cfg, read_config_file(file))
    if overrides:
        cfg = merge(cfg, overrides)
    return cfg.validate()


def read_config_file(file: str | Path) -> dict[str, Any]:
    import yaml

    path = Path(file)
    if not path.is_file():
        raise ConfigError(f"config file {path} {'is a directory' if path.is_dir() else 'does not exist'}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise ConfigError(f"config file {path} is not valid YAML/JSON: {err}") from err
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of settings, got {type(data).__name__}")
    return data
