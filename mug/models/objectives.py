"""The four pre-training paradigms of the paper's 2x2, all on the same encoder, built by name.

Each objective maps a batch dict to a dict of named losses whose "loss" entry is the one to minimise.
Batch keys: "image" [N, 3, H, W]; "tokens" [N, T] (BOS ... EOS PAD...) for text objectives; "image2", a second
augmented view, for SimCLR. `Objective.inputs` tells the data loader which keys to produce.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from timm.layers import Mlp
from torch import nn

from mug.config import ModelConfig
from mug.models.encoder import MaskedViTEncoder, pool
from mug.models.pixel_decoder import PixelDecoder, masked_patch_mse
from mug.models.text import TextTransformer
from mug.train.distributed import gather_with_local_grad

_BUILDERS: dict[str, Callable[[ModelConfig], Objective]] = {}


def objective(name: str):
    """Decorator: the class or function that builds the objective `name` (`cfg.objective.name`)."""

    def wrap(builder):
        _BUILDERS[name] = builder
        return builder

    return wrap


def build_model(cfg: ModelConfig) -> Objective:
    """The objective named by `cfg.objective.name`, freshly initialised."""
    cfg.validate()
    return _BUILDERS[cfg.objective.name](cfg)


class Objective(nn.Module):
    """A pre-training objective around a `MaskedViTEncoder`, the part every paradigm shares and exports."""

    inputs: tuple[str, ...] = ("image",)

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder = MaskedViTEncoder(cfg.encoder)

    def after_optimizer_step(self) -> None:
        """Keeps parameters inside their bounds; the training loop calls it after every optimiser step."""

    def no_weight_decay(self) -> set[str]:
        """Full parameter names exempt from weight decay besides biases and norms (MAE's recipe)."""
        names = set()
        for prefix, module in self.named_modules():
            if module is not self and hasattr(module, "no_weight_decay"):
                names |= {f"{prefix}.{n}" for n in module.no_weight_decay()}
        return names


class MaskedGenerative(Objective):
    """MAE (pixel decoder only) and MUG (pixel decoder + caption decoder on one masked encoder pass)."""

    def __init__(self, cfg: ModelConfig, caption: bool):
        super().__init__(cfg)
        obj = cfg.objective
        self.w_rec = obj.w_rec
        self.w_cap = obj.w_cap if caption else 0.0
        self.pixel_decoder = PixelDecoder(cfg.encoder, cfg.pixel_decoder) if self.w_rec > 0 else None
        self.caption_decoder = TextTransformer(cfg.text, image_width=cfg.encoder.width) if self.w_cap > 0 else None
        self.inputs = ("image", "tokens") if self.caption_decoder is not None else ("image",)

    def forward(
        self,
        batch: dict[str, torch.Tensor],
        noise: torch.Tensor | None = None,
        tokens_per_batch: torch.Tensor | float | None = None,
    ) -> dict[str, torch.Tensor]:
        """`noise` [N, L] fixes the masks; `tokens_per_batch` normalises the caption loss (see `caption_loss`)."""
        images = batch["image"]
        enc = self.encoder(images, self.cfg.objective.mask_ratio, noise)
        losses: dict[str, torch.Tensor] = {}
        total = images.new_zeros(())
        if self.pixel_decoder is not None:
            pred = self.pixel_decoder(enc.latent, enc.ids_restore)
            losses["loss_rec"] = masked_patch_mse(
                pred, images, enc.mask, self.cfg.encoder.patch_size, self.cfg.pixel_decoder.norm_pix_loss
            )
            total = total + self.w_rec * losses["loss_rec"]
        if self.caption_decoder is not None:
            memory = self.caption_decoder.project_memory(enc.latent)
            losses["loss_cap"] = self.caption_decoder.caption_loss(batch["tokens"], memory, tokens_per_batch)
            total = total + self.w_cap * losses["loss_cap"]
        losses["loss"] = total
        return losses


@objective("mae")
def _mae(cfg: ModelConfig) -> MaskedGenerative:
    return MaskedGenerative(cfg, caption=False)


@objective("mug")
def _mug(cfg: ModelConfig) -> MaskedGenerative:
    return MaskedGenerative(cfg, caption=True)


def projection_mlp(in_dim: int, out_dim: int) -> Mlp:
    return Mlp(in_dim, in_dim, out_dim, act_layer=nn.ReLU)


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """SimCLR's loss: each view must find its partner among the 2N - 1 other views of the batch.

    Row i of `z1` and of `z2` are two views of one image; under DDP they hold the global batch, gathered by
    `gather_with_local_grad` in rank order, so the pairs stay aligned."""
    z = F.normalize(torch.cat([z1, z2]).float(), dim=-1)  # [2N, P]
    sim = z @ z.t() / temperature
    sim.fill_diagonal_(float("-inf"))
    n = z1.shape[0]
    partner = torch.cat([torch.arange(n, 2 * n), torch.arange(n)]).to(z.device)
    return F.cross_entropy(sim, partner)


@objective("simclr")
class SimCLR(Objective):
    inputs = ("image", "image2")

    def __init__(self, cfg: ModelConfig):
        super().__init__(cfg)
        self.projector = projection_mlp(cfg.encoder.width, cfg.objective.proj_dim)

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        return self.projector(pool(self.encoder(images).latent, self.cfg.objective.pool))

    def forward(
        self, batch: dict[str, torch.Tensor], tokens_per_batch: torch.Tensor | float | None = None
    ) -> dict[str, torch.Tensor]:
        """`tokens_per_batch` is ignored: a contrastive loss is a per-batch quantity."""
        both = self.embed(torch.cat([batch["image"], batch["image2"]]))  # one pass over 2N images
        z1, z2 = (gather_with_local_grad(z) for z in both.chunk(2))  # the global batch's views: its negatives
        loss = nt_xent(z1, z2, self.cfg.objective.simclr_temperature)
        return {"loss_contrastive": loss, "loss": loss}


def clip_loss(image_emb: torch.Tensor, text_emb: torch.Tensor, logit_scale: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE over the batch (the global one under DDP, see `gather_with_local_grad`): image i matches
    caption i."""
    image_emb, text_emb = F.normalize(image_emb.float(), dim=-1), F.normalize(text_emb.float(), dim=-1)
    logits = logit_scale * image_emb @ text_emb.t()
    labels = torch.arange(logits.shape[0], device=logits.device)
    return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.t(), labels)) / 2


@objective("clip")
class CLIP(Objective):
    inputs = ("image", "tokens")

    def __init__(self, cfg: ModelConfig):
        super().__init__(cfg)
        obj = cfg.objective
        self.text_encoder = TextTransformer(cfg.text)
        self.image_proj = nn.Linear(cfg.encoder.width, obj.proj_dim, bias=False)
        self.text_proj = nn.Linear(cfg.text.width, obj.proj_dim, bias=False)
        nn.init.normal_(self.image_proj.weight, std=cfg.encoder.width**-0.5)
        nn.init.normal_(self.text_proj.weight, std=cfg.text.width**-0.5)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / obj.clip_init_temperature)))

    def embed_image(self, images: torch.Tensor) -> torch.Tensor:
        return self.image_proj(pool(self.encoder(images).latent, self.cfg.objective.pool))

    def embed_text(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.text_proj(self.text_encoder.pooled(tokens))

    def forward(
        self, batch: dict[str, torch.Tensor], tokens_per_batch: torch.Tensor | float | None = None
    ) -> dict[str, torch.Tensor]:
        """`tokens_per_batch` is ignored: a contrastive loss is a per-batch quantity."""
        scale = self.logit_scale.exp()  # kept <= clip_max_logit_scale by `after_optimizer_step`
        image_emb = gather_with_local_grad(self.embed_image(batch["image"]))  # the global batch: its negatives
        text_emb = gather_with_local_grad(self.embed_text(batch["tokens"]))
        loss = clip_loss(image_emb, text_emb, scale)
        return {"loss_contrastive": loss, "loss": loss, "logit_scale": scale.detach()}

    @torch.no_grad()
    def after_optimizer_step(self) -> None:
        """open_clip's bound, applied to the parameter in place: a clamp in the forward pass would leave it no
        gradient above the bound, where it could drift without limit."""
        self.logit_scale.clamp_(0, math.log(self.cfg.objective.clip_max_logit_scale))

    def no_weight_decay(self) -> set[str]:
        return super().no_weight_decay() | {"logit_scale"}
