"""Simulations of InfoNCE cluster preservation: data, function classes, training, metrics.

The per-run core: configuration (:mod:`sims.config`) → points (:mod:`sims.data`) → batches →
embeddings (:mod:`sims.models`) → loss (:mod:`sims.loss`) → parameters (:mod:`sims.train`) →
metrics (:mod:`sims.metrics`), and the class minimum on a run's data (:mod:`sims.oracle`).
Many runs: :mod:`sims.sweep`; tables and figures: :mod:`sims.report`; the command line:
:mod:`sims.cli`; the performance bench: :mod:`sims.bench`.

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
from sims.train import (
    Fit,
    RunKeys,
    fit,
    fit_grid,
    grid_points,
    grid_program,
    make_train,
    program_key,
    run_keys,
    swept_inputs,
    train_grid,
    train_one,
)

__all__ = [
    "SWEEPABLE", "SWEPT_NAMES", "ExperimentConfig", "MixtureSpec", "ModelConfig", "TrainConfig",
    "build_config", "Batch", "Mixture", "design_certificate", "materialize", "sample_batch",
    "infonce", "COLUMNS", "classify", "finalize", "simplex_edge", "FunctionClass", "make_model",
    "Fit", "RunKeys", "fit", "fit_grid", "grid_points", "grid_program", "make_train", "program_key", "run_keys",
    "swept_inputs", "train_grid", "train_one",
]
