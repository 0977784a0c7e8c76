"""Causal text transformers: MUG's caption decoder (with cross-attention to image latents) and CLIP's text
encoder (without). One block type serves both; a KV cache makes generation linear in the caption length.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from timm.layers import DropPath, Mlp
from torch import nn

from mug.config import TextConfig
from mug.models.init import init_transformer_weights


@dataclass
class KVCache:
    """Per-layer keys/values: self-attention grows by one step per token, cross-attention is computed once."""

    self_kv: list[tuple[torch.Tensor, torch.Tensor] | None] = field(default_factory=list)
    cross_kv: list[tuple[torch.Tensor, torch.Tensor] | None] = field(default_factory=list)

    @classmethod
    def empty(cls, depth: int) -> KVCache:
        return cls([None] * depth, [None] * depth)

    @property
    def length(self) -> int:
        first = self.self_kv[0] if self.self_kv else None
        return 0 if first is None else first[0].shape[2]

    def select(self, index: torch.Tensor) -> KVCache:
        """Keep/reorder batch rows (beam search)."""

        def pick(kv):
            return None if kv is None else (kv[0].index_select(0, index), kv[1].index_select(0, index))

        return KVCache([pick(kv) for kv in self.self_kv], [pick(kv) for kv in self.cross_kv])


def _split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    n, t, d = x.shape
    return x.view(n, t, heads, d // heads).transpose(1, 2)  # [N, H, T, hd]


def _merge_heads(x: torch.Tensor) -> torch.Tensor:
    n, h, t, hd = x.shape
    return x.transpose(1, 2).reshape(n, t, h * hd)


class CausalSelfAttention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(
        self, x: torch.Tensor, past: tuple[torch.Tensor, torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        q, k, v = (_split_heads(t, self.heads) for t in self.qkv(x).chunk(3, dim=-1))
        new = q.shape[2]
        if past is not None:
            k, v = torch.cat([past[0], k], dim=2), torch.cat([past[1], v], dim=2)
        if past is None or new == k.shape[2]:
            out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        elif new == 1:
            out = F.scaled_dot_product_attention(q, k, v)  # the newest token sees everything before it
        else:  # several new tokens after a cached past: causal within, full view of the past
            allowed = torch.ones(new, k.shape[2], dtype=torch.bool, device=x.device).tril(k.shape[2] - new)
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)
        return self.proj(_merge_heads(out)), (k, v)


class CrossAttention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(
        self, x: torch.Tensor, memory: torch.Tensor, kv: tuple[torch.Tensor, torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        if kv is None:
            kv = tuple(_split_heads(t, self.heads) for t in self.kv(memory).chunk(2, dim=-1))
        out = F.scaled_dot_product_attention(_split_heads(self.q(x), self.heads), *kv)
        return self.proj(_merge_heads(out)), kv


class TextBlock(nn.Module):
    """Pre-norm block: causal self-attention, then (decoder only) cross-attention to the image, then MLP."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float, drop_path: float, cross: bool):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = CausalSelfAttention(dim, heads)
        self.norm_cross = nn.LayerNorm(dim) if cross else None
        self.cross_attn = CrossAttention(dim, heads) if cross else None
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act_layer=nn.GELU)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x, memory=None, past=None, cross_kv=None):
        out, past = self.attn(self.norm1(x), past)
        x = x + self.drop_path(out)
        if self.cross_attn is not None:
            out, cross_kv = self.cross_attn(self.norm_cross(x), memory, cross_kv)
            x = x + self.drop_path(out)
        x = x + self.drop_path(self.mlp(self.norm2(x)))
        return x, past, cross_kv


class TextTransformer(nn.Module):
    """Token + learned position embeddings, causal blocks, final norm.

    With `image_width` set it is MUG's caption decoder: it cross-attends to projected encoder latents and has
    a vocabulary head. Without it, it is CLIP's text encoder and returns the features of the last real token.
    """

    def __init__(self, cfg: TextConfig, image_width: int | None = None):
        super().__init__()
        self.cfg = cfg
        cross = image_width is not None
        self.token_embed = nn.Embedding(cfg.vocab_size, cfg.width)
        self.pos_embed = nn.Parameter(torch.zeros(1, cfg.context_length, cfg.width))
        self.memory_proj = nn.Linear(image_width, cfg.width) if cross else None
        rates = torch.linspace(0, cfg.drop_path, cfg.depth).tolist()
        self.blocks = nn.ModuleList(TextBlock(cfg.width, cfg.heads, cfg.mlp_ratio, r, cross) for r in rates)
        self.norm = nn.LayerNorm(cfg.width)
        self.head = nn.Linear(cfg.width, cfg.vocab_size, bias=False) if cross else None
        self.apply(init_transformer_weights)
        nn.init.normal_(self.pos_embed, std=0.01)
        if self.head is not None and cfg.tie_embeddings:
            self.head.weight = self.token_embed.weight

    def project_memory(self, latent: torch.Tensor) -> torch.Tensor:
        """Encoder latents [N, 1 + keep, D_img] -> cross-attention memory [N, 1 + keep, D_txt]."""
        return self.memory_proj(latent)

    def features(
        self, tokens: torch.Tensor, memory: torch.Tensor | None = None, cache: KVCache | None = None
    ) -> torch.Tensor:
        """Normed hidden states [N, T, D]; a cache, if given, supplies the past and is extended in place."""
        start = cache.length if cache is not None else 0
        if start + tokens.shape[1] > self.cfg.context_length:
            raise ValueError(f"sequence of {start + tokens.shape[1]} tokens exceeds text.context_length")
        x = self.token_embed(tokens) + self.pos_embed[:, start : start + tokens.shape[1]]
        for i, block in enumerate(self.blocks):
            past = cache.self_kv[i] if cache is not None else None
            cross_kv = cache.cross_kv[i] if cache is not None else None
            x, past, cross_kv = block(x, memory, past, cross_kv)
            if cache is not None:
                cache.self_kv[i], cache.cross_kv[i] = past, cross_kv
        return self.norm(x)

    def forward(
        self, tokens: torch.Tensor, memory: torch.Tensor | None = None, cache: KVCache | None = None
    ) -> torch.Tensor:
        """Next-token logits [N, T, V] (caption decoder)."""
        return self.head(self.features(tokens, memory, cache))

    def caption_loss(
        self, tokens: torch.Tensor, memory: torch.Tensor, tokens_per_batch: torch.Tensor | float | None = None
    ) -> torch.Tensor:
        """Next-token cross-entropy of `tokens` [N, T] over real (non-pad) targets: their mean, or their sum
        divided by `tokens_per_batch`, which a trainer sets to the average real-token count of its micro-batches
        so that accumulated and distributed steps weigh every token alike.

        On a GPU, and whenever compiled, padding is ignored by the loss: cutting it out would give a shape that
        depends on the data, a host sync and a graph break. In the CPU's eager step nothing waits for a device,
        and the vocabulary head on the real positions only makes the step faster (docs/benchmarks.md)."""
        hidden = self.features(tokens[:, :-1], memory)  # [N, T-1, D]
        targets = tokens[:, 1:]
        if hidden.is_cpu and not torch.compiler.is_compiling():
            real = targets != self.cfg.pad_id
            hidden, targets = hidden[real], targets[real]  # [R, D], [R]
        logits = self.head(hidden).float().flatten(0, -2)  # [N (T-1) or R, V]
        reduction = "mean" if tokens_per_batch is None else "sum"
        loss = F.cross_entropy(logits, targets.flatten(), ignore_index=self.cfg.pad_id, reduction=reduction)
        return loss if tokens_per_batch is None else loss / tokens_per_batch

    def pooled(self, tokens: torch.Tensor) -> torch.Tensor:
        """Feature of the last real (non-pad) token, the EOS: the whole caption seen causally (CLIP)."""
        x = self.features(tokens)
        last = (tokens != self.cfg.pad_id).sum(dim=1).clamp(min=1) - 1
        return x[torch.arange(x.shape[0], device=x.device), last]

    def no_weight_decay(self) -> set[str]:
        return {"pos_embed"}
