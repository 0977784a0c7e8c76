"""Kubeflow components: thin `@dsl.component` functions over `mug.steps`, each run in the project's image."""

from components.beats_production import beats_production
from components.evaluate_checkpoint import evaluate_checkpoint
from components.pretrain import pretrain
from components.production_model import production_model
from components.rank_objectives import rank_objectives
from components.register_model import register_model
from components.validate_data import validate_data
from components.whats_new import whats_new

__all__ = [
    "beats_production",
    "evaluate_checkpoint",
    "pretrain",
    "production_model",
    "rank_objectives",
    "register_model",
    "validate_data",
    "whats_new",
]
