"""Simulations of InfoNCE cluster preservation: data, function classes, training, metrics.

Quick use::

    import sims
    row = sims.train_one(data={"geometry": "chain", "gap": 0.05},
                         model={"kind": "lipschitz_mlp", "lipschitz": 1.0},
                         train={"steps": 1500, "negatives": 16, "temperature": 0.5}, seed=0)
"""

from sims.config import (
    SWEEPABLE,
    SWEPT_NAMES,
    ExperimentConfig,
    MixtureSpec,
    ModelConfig,
    TrainConfig,
    build_config,
)
from sims.data import Batch, Mixture, design_certificate, materialize, sample_batch
from sims.loss import infonce
from sims.metrics import COLUMNS, classify, finalize, simplex_edge
from sims.models import FunctionClass, make_model
from sims.train import Fit, fit, make_train, swept_inputs, train_one

__all__ = [
    "SWEEPABLE", "SWEPT_NAMES", "ExperimentConfig", "MixtureSpec", "ModelConfig", "TrainConfig",
    "build_config", "Batch", "Mixture", "design_certificate", "materialize", "sample_batch",
    "infonce", "COLUMNS", "classify", "finalize", "simplex_edge", "FunctionClass", "make_model",
    "Fit", "fit", "make_train", "swept_inputs", "train_one",
]
