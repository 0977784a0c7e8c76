"""MAE/timm-style initialisation shared by every module of the models."""

from torch import nn


def init_transformer_weights(module: nn.Module) -> None:
    """Xavier-uniform linears with zero bias, unit LayerNorms, N(0, 0.02) embeddings (MAE's recipe)."""
    if isinstance(module, nn.Linear):
        nn.init.xavier_uniform_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        if module.weight is not None:
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Embedding):
        nn.init.normal_(module.weight, std=0.02)
