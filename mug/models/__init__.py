"""Models: the masked ViT encoder, MAE's pixel decoder, the caption decoder, and the objectives."""

from mug.models.encoder import MaskedViTEncoder, pool, to_timm
from mug.models.objectives import CLIP, MaskedGenerative, Objective, SimCLR, build_model

__all__ = ["CLIP", "MaskedGenerative", "MaskedViTEncoder", "Objective", "SimCLR", "build_model", "pool", "to_timm"]
