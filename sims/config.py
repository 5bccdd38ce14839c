"""Typed, validated configuration: the three sections of an experiment.

An experiment is three frozen dataclasses, one per section of a ``train_one`` call or a
sweep file:

* ``[data]``  -> :class:`MixtureSpec`  (docs/theory.md §1 and §4)
* ``[model]`` -> :class:`ModelConfig`  (function class, head, certified bound)
* ``[train]`` -> :class:`TrainConfig`  (InfoNCE with K negatives, optimiser, steps)

Every field is checked when the dataclass is built, and a bad value raises a one-line
``ValueError`` naming the field and the value. Fields listed in :data:`SWEEPABLE` do not
change any array shape: the compiled training program takes them as explicit array inputs
(:func:`check_swept` validates them on the host), so a grid over them is one
``jit(vmap(train))`` call. All other fields are static. Configuration objects only ever
hold validated host values, never traced ones.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Mapping

from sims import digits, limits
from theory import validate
from theory.limits import RUN_MIN_TEMPERATURE

GEOMETRIES = ("chain", "interleaved", "lattice")
#: where the data come from: the synthetic layouts of :mod:`sims.data` (``geometry``), or real
#: augmentations of the 8×8 handwritten digits (:mod:`sims.digits`, docs/theory.md §7).
SOURCES = ("synthetic", "digits")
#: the fields of ``[data]`` that only the synthetic layouts read, and those only the digits read
#: (a value other than the default under the other source is refused, never ignored).
SYNTHETIC_FIELDS = ("geometry", "gap", "cluster_separation", "set_extent", "cluster_layout", "overlap_layout")
DIGITS_FIELDS = ("augmentations", "shift", "rotation", "jitter", "seed")
MODEL_KINDS = ("linear", "mlp", "lipschitz_mlp", "rff")
#: kinds whose ``model.lipschitz`` is a cap kept after every update (``mlp`` has none: its
#: only bound is the certified one of the trained network).
CAPPED_KINDS = ("linear", "lipschitz_mlp", "rff")
HEADS = ("ball", "sphere")
NEGATIVE_MODES = ("shared", "independent")
SCHEDULES = ("constant", "cosine")
#: training objectives (:mod:`sims.loss`): InfoNCE with i.i.d. negatives (the paper's), and
#: the objectives practitioners train with, on the same data and function classes.
OBJECTIVES = ("infonce", "ntxent", "dcl", "debiased", "spectral", "align_uniform")
#: objectives whose negatives are the other samples of the batch (:func:`sims.loss.ntxent`,
#: :func:`sims.loss.dcl`): a batch of one sample has none, so they need ``batch_size >= 2``
#: (and ``eval_batch >= 2``, the batch of ``objective_final``).
IN_BATCH_OBJECTIVES = ("ntxent", "dcl")
#: longest key or text a message quotes whole (a longer one is cut, :func:`shown`).
SHOWN_CHARS = 60
#: how the clusters are placed: in a ``row`` (neighbours Δ apart) or on a regular ``simplex``
#: (every pair Δ apart).
CLUSTER_LAYOUTS = ("row", "simplex")
#: how the sets of a chain cluster lie as the gap crosses 0 (docs/theory.md §4): ``stretch``
#: (parallel segments for δ > 0, segments of length ``set_extent`` end to end for δ <= 0, so
#: an overlapping cluster is about ``n·set_extent`` long) or ``fixed`` (the ``n`` sets end to
#: end on one line of length ``set_extent`` for every δ: gaps between them or overlaps).
OVERLAP_LAYOUTS = ("stretch", "fixed")

#: (section, field) pairs that never change an array shape; the training program takes
#: them as inputs, so they can be swept inside one compiled program.
SWEEPABLE: dict[str, tuple[str, ...]] = {
    "data": ("gap", "cluster_separation", "set_extent"),
    "model": ("lipschitz", "bandwidth"),
    "train": ("temperature", "learning_rate", "tau_plus", "uniformity_weight"),
}
#: seeds become ``jax.random.PRNGKey(seed)``: integers in ``[0, MAX_SEED]`` (uint32).
MAX_SEED = 2**32 - 1

#: flat names of the swept inputs of ``train(key, swept)``; unique across sections.
SWEPT_NAMES: tuple[str, ...] = tuple(n for names in SWEEPABLE.values() for n in names)


def check_seed(value: Any, name: str = "seed") -> int:
    """A run's seed: an integer (Python or numpy, not a boolean) in ``[0, MAX_SEED]``.

    Example:
      >>> check_seed(-1)
      Traceback (most recent call last):
      ...
      ValueError: seed: must be at least 0, got -1
    """
    return validate.integer(name, value, minimum=0, maximum=MAX_SEED)


def shown(text: Any, limit: int = SHOWN_CHARS) -> str:
    """``text`` (a key, a name) for a one-line message: its first ``limit`` characters and
    ``…`` when it is longer, so that a message never echoes a huge key whole.

    Example:
      >>> shown("x" * 100)[-4:], len(shown("x" * 100))
      ('xxx…', 61)
    """
    text = str(text)
    return text if len(text) <= limit else text[:limit] + "…"


def shown_repr(value: Any, limit: int = SHOWN_CHARS) -> str:
    """``repr(value)`` cut like :func:`shown`."""
    return shown(repr(value), limit)


def _fail(section: str, name: str, value: Any, why: str) -> None:
    validate.fail(f"{section}.{name}", value, why)


def _check_int(obj: Any, section: str, name: str, minimum: int) -> None:
    """Validate an integer field and store it as a Python ``int`` (numpy integers accepted)."""
    value = validate.integer(f"{section}.{name}", getattr(obj, name), minimum=minimum)
    object.__setattr__(obj, name, value)


def _check_real(obj: Any, section: str, name: str, **limits: Any) -> None:
    """Validate a real field (finite, float32-representable) and store it as a ``float``."""
    value = validate.real(f"{section}.{name}", getattr(obj, name), float32=True, **limits)
    object.__setattr__(obj, name, value)


def _check_choice(obj: Any, section: str, name: str, choices: tuple[str, ...]) -> None:
    validate.choice(f"{section}.{name}", getattr(obj, name), choices)


@dataclass(frozen=True)
class MixtureSpec:
    """A mixture of clusters of disjoint but intertwined augmentation sets (docs/theory.md §1, §4).

    Attributes:
      geometry: ``chain`` (parallel segments, consecutive gap δ: β = δ, D_c = (n−1)δ),
        ``interleaved`` (alternating comb teeth, period nδ: β = δ, D_c = ⌊n/2⌋δ) or
        ``lattice`` (a δ-grid coloured so every pair of sets touches: β = δ, D_c = δ).
      n_clusters: number of clusters ``m`` (at least 2).
      sets_per_cluster: ``n`` sets in every cluster, or one count per cluster
        (imbalanced clusters: weights ``π_c = n_c / N``).
      points_per_set: points in each set's point cloud (static shape).
      input_dim: ambient dimension ``D`` (at least 2: each cluster is a 2-D layout
        embedded by a random orthogonal map). 0, the default, is the source's own: 2 for the
        synthetic layouts, the 64 pixels for the digits (fewer: their PCA, :mod:`sims.digits`).
      gap: δ, the set distance between neighbouring sets of a cluster. Sweepable. ``> 0``:
        disjoint sets; ``<= 0`` (chain only, the augmentation-overlap regime): the chain's
        sets lie end to end on one line, consecutive sets sharing a stretch of about ``|δ|``
        — ``|δ|`` rounded to whole point spacings ``h = set_extent/(points_per_set − 1)``
        (the realised overlap is ``r·h``, ``r = round(|δ|/h)``, shared points coincide
        exactly; 0: sets touch at one point), and the set distance of overlapping sets is
        0 (:mod:`sims.data`). The overlap must leave every set at least 2 points of its
        own: ``points_per_set − 2(r + 1) >= 2`` (``− (r + 1)`` with 2 sets per cluster), about
        ``|δ| < set_extent/2`` (:func:`sims.limits.check_gap`).
      cluster_separation: Δ, the smallest distance between points of two different
        clusters (> 0). Sweepable.
      set_extent: length of a segment (chain) or tooth (interleaved). Sweepable.
      cluster_layout: ``row`` (clusters side by side along a line, neighbours Δ apart) or
        ``simplex`` (every pair of clusters exactly Δ apart: cluster ``c`` in its own plane,
        coordinates ``2c, 2c + 1`` of ``R^{2m}``, its point nearest the origin at ``Δ/√2``;
        needs ``input_dim >= 2·n_clusters``).
      overlap_layout: how a chain cluster's sets lie (chain only, :data:`OVERLAP_LAYOUTS`):
        ``stretch`` (the default: parallel segments of length ``set_extent`` for δ > 0, the
        same segments end to end for δ <= 0, so the cluster is about
        ``n·set_extent − (n − 1)|δ|`` long when its sets overlap) or ``fixed`` (the ``n`` sets
        end to end on one line whose length, the cluster's extent, is ``set_extent`` for every
        δ: sets of length ``ℓ = (set_extent − (n − 1)·δ)/n`` with gaps δ > 0 between them, or
        overlapping by ``|δ|`` rounded to whole point spacings; needs ``(n − 1)·δ <
        set_extent``). So ``fixed`` changes the overlap without changing the cluster's shape
        (:mod:`sims.data`).
      source: ``synthetic`` (the layouts above, the default) or ``digits``: clusters are the
        digit classes ``0..n_clusters − 1`` (at most 10), sets the first ``sets_per_cluster``
        images of each class, and each set ``points_per_set`` augmentations of its image
        (:mod:`sims.digits`, docs/theory.md §7). The synthetic fields (:data:`SYNTHETIC_FIELDS`)
        then keep their defaults, and under ``synthetic`` the digits fields
        (:data:`DIGITS_FIELDS`) keep theirs.
      augmentations: digits only: which augmentations make a set, comma-separated names of
        ``sims.digits.AUGMENTATIONS`` (``shift``, ``rotate``, ``jitter``).
      shift: digits only: the integer pixel shifts ``dx, dy`` are uniform in ``[−shift, shift]``.
      rotation: digits only: the rotation angle is uniform in ``[−rotation, rotation]`` degrees.
      jitter: digits only: the intensity factor is uniform in ``[1 − jitter, 1 + jitter]``.
      seed: digits only: the seed of the augmentations (image ``i`` draws from
        ``numpy.random.default_rng([seed, i])``), apart from the run's seed, so that every run
        of a sweep trains on the same data.
    """

    geometry: str = "chain"
    n_clusters: int = 3
    sets_per_cluster: int | tuple[int, ...] = 4
    points_per_set: int = 32
    input_dim: int = 0
    gap: float = 0.05
    cluster_separation: float = 3.0
    set_extent: float = 1.0
    cluster_layout: str = "row"
    overlap_layout: str = "stretch"
    source: str = "synthetic"
    augmentations: str = "shift,rotate,jitter"
    shift: int = 1
    rotation: float = 10.0
    jitter: float = 0.1
    seed: int = 0

    def __post_init__(self) -> None:
        s = "data"
        _check_choice(self, s, "source", SOURCES)
        _check_source_fields(self)
        if self.input_dim == 0 and not isinstance(self.input_dim, bool):
            object.__setattr__(self, "input_dim", digits.PIXELS if self.source == "digits" else 2)
        _check_choice(self, s, "geometry", GEOMETRIES)
        _check_choice(self, s, "cluster_layout", CLUSTER_LAYOUTS)
        _check_choice(self, s, "overlap_layout", OVERLAP_LAYOUTS)
        if self.overlap_layout != "stretch" and self.geometry != "chain":
            _fail(s, "overlap_layout", self.overlap_layout,
                  f"is defined for the chain geometry only (data.geometry {self.geometry!r})")
        _check_int(self, s, "n_clusters", 2)
        spc = self.sets_per_cluster
        if isinstance(spc, list):
            object.__setattr__(self, "sets_per_cluster", tuple(spc))
            spc = self.sets_per_cluster
        if isinstance(spc, tuple):
            if len(spc) != self.n_clusters:
                _fail(s, "sets_per_cluster", spc, f"needs one count per cluster ({self.n_clusters})")
            spc = tuple(validate.integer(f"{s}.sets_per_cluster", c, minimum=2) for c in spc)
            # a uniform tuple is the plain count
            object.__setattr__(self, "sets_per_cluster", spc[0] if len(set(spc)) == 1 else spc)
        else:
            _check_int(self, s, "sets_per_cluster", 2)
        _check_int(self, s, "points_per_set", 2)
        _check_int(self, s, "input_dim", 2)
        # any sign: δ <= 0 is the overlap regime, whose rules (chain only, every set keeps 2
        # points of its own) need the other fields and hold for swept values too:
        # sims.limits.check_gap, through limits.check_data below
        _check_real(self, s, "gap")
        _check_real(self, s, "cluster_separation", positive=True)
        _check_real(self, s, "set_extent", positive=True)
        if self.source == "digits":
            digits.check_fields(self)
        elif self.geometry == "lattice":
            need = 2 * (max(self.set_counts) // 2)
            if self.points_per_set < need:
                _fail(
                    s, "points_per_set", self.points_per_set,
                    f"lattice with {max(self.set_counts)} sets per cluster needs at least {need}",
                )
        if self.source == "synthetic" and self.geometry == "interleaved" and self.points_per_set < 4:
            _fail(s, "points_per_set", self.points_per_set, "interleaved combs need at least 4")
        limits.check_data(self)

    @property
    def set_counts(self) -> tuple[int, ...]:
        """Number of sets in each cluster."""
        spc = self.sets_per_cluster
        return tuple(spc) if isinstance(spc, tuple) else (spc,) * self.n_clusters

    @property
    def n_sets(self) -> int:
        """Total number of augmentation sets ``N``."""
        return sum(self.set_counts)

    @property
    def cluster_weights(self) -> tuple[float, ...]:
        """``π_c = n_c / N`` (every set carries equal weight)."""
        return tuple(n / self.n_sets for n in self.set_counts)

    @property
    def balanced(self) -> bool:
        return len(set(self.set_counts)) == 1


def _check_source_fields(spec: "MixtureSpec") -> None:
    """The digits fields (validated here) and the synthetic fields: those of the other source
    than ``spec.source`` must keep their defaults (one line naming the field)."""
    s = "data"
    _check_int(spec, s, "shift", 0)
    if spec.shift > digits.MAX_SHIFT:
        _fail(s, "shift", spec.shift, f"must be at most {digits.MAX_SHIFT} pixels (an image is {digits.SIDE} wide)")
    _check_real(spec, s, "rotation", minimum=0.0, maximum=digits.MAX_ROTATION)
    _check_real(spec, s, "jitter", minimum=0.0)
    if not spec.jitter < 1.0:
        _fail(s, "jitter", spec.jitter, "must be below 1 (intensities are scaled by 1 ± jitter)")
    object.__setattr__(spec, "seed", check_seed(spec.seed, f"{s}.seed"))
    digits.augmentation_names(spec.augmentations)
    other = SYNTHETIC_FIELDS if spec.source == "digits" else DIGITS_FIELDS
    for name in other:
        default = _MIXTURE_DEFAULTS[name]
        if getattr(spec, name) != default:
            _fail(s, name, getattr(spec, name),
                  f"applies to data.source {'synthetic' if spec.source == 'digits' else 'digits'!r} only "
                  f"(with data.source {spec.source!r} it must keep its default {default!r})")


@dataclass(frozen=True)
class ModelConfig:
    """A function class of certified complexity and its output head.

    Attributes:
      kind: ``linear`` (Lip = ‖W‖₂ ≤ lipschitz), ``mlp`` (unconstrained; its certified
        bound is whatever Π‖W_l‖₂ it ends with), ``lipschitz_mlp`` (each of ``depth``
        layers kept at spectral norm ≤ lipschitz^(1/depth)) or ``rff`` (fixed random
        Fourier features of ``width`` features and ``bandwidth``, norm-bounded readout).
      width: hidden width (MLPs) or number of random features (rff).
      depth: number of linear layers of an MLP (at least 1).
      lipschitz: the configured bound ``L`` (ignored by ``mlp``). Sweepable.
      out_dim: representation dimension ``d``.
      head: ``ball`` (projection onto the unit ball, 1-Lipschitz) or ``sphere``
        (normalisation, the SimCLR convention; not Lipschitz near 0).
      bandwidth: length scale of the rff features (ω ~ N(0, I / bandwidth²)). Sweepable.
    """

    kind: str = "lipschitz_mlp"
    width: int = 64
    depth: int = 3
    lipschitz: float = 1.0
    out_dim: int = 3
    head: str = "ball"
    bandwidth: float = 1.0

    def __post_init__(self) -> None:
        s = "model"
        _check_choice(self, s, "kind", MODEL_KINDS)
        _check_int(self, s, "width", 1)
        _check_int(self, s, "depth", 1)
        _check_real(self, s, "lipschitz", positive=True)
        _check_int(self, s, "out_dim", 1)
        _check_choice(self, s, "head", HEADS)
        _check_real(self, s, "bandwidth", positive=True)

    @property
    def capped(self) -> bool:
        """Whether ``lipschitz`` is a cap the class is kept under (all kinds but ``mlp``)."""
        return self.kind in CAPPED_KINDS


@dataclass(frozen=True)
class TrainConfig:
    """InfoNCE training: K negatives, temperature τ, Adam, a fixed number of steps.

    Attributes:
      steps: optimisation steps (one ``lax.scan``).
      batch_size: anchors per step (at least 2 for the in-batch objectives,
        :data:`IN_BATCH_OBJECTIVES`, whose negatives are the other samples of the batch).
      negatives: K, the number of negatives per anchor (at least 1).
      temperature: τ (> 0). Sweepable.
      learning_rate: Adam's step size. Sweepable.
      negative_mode: ``shared`` (one pool of K i.i.d. negatives per step used by every
        anchor) or ``independent`` (K fresh negatives per anchor); same expected loss.
      schedule: ``constant`` or ``cosine`` (decay to zero over ``steps``).
      eval_batch: anchors in the fixed evaluation batch behind ``loss_final``.
      curve_points: length of the subsampled loss curve returned.
      objective: what training minimises, one of :data:`OBJECTIVES` (:mod:`sims.loss`);
        ``loss_final`` is InfoNCE whatever the objective (comparable with the floors),
        ``objective_final`` the objective itself, both on the evaluation batch.
      tau_plus: τ⁺, the class prior of the ``debiased`` objective, in (0, 1) (the true
        prior of m equal clusters is 1/m; the loss divides by ``1 − τ⁺``). Sweepable.
      uniformity_weight: weight of the uniformity term of ``align_uniform`` (> 0). Sweepable.
    """

    steps: int = 1500
    batch_size: int = 256
    negatives: int = 16
    temperature: float = 0.5
    learning_rate: float = 3e-3
    negative_mode: str = "shared"
    schedule: str = "constant"
    eval_batch: int = 8192
    curve_points: int = 50
    objective: str = "infonce"
    tau_plus: float = 0.1
    uniformity_weight: float = 1.0

    def __post_init__(self) -> None:
        s = "train"
        _check_int(self, s, "steps", 1)
        _check_int(self, s, "batch_size", 1)
        _check_int(self, s, "negatives", 1)
        _check_real(self, s, "temperature", minimum=RUN_MIN_TEMPERATURE)
        _check_real(self, s, "learning_rate", positive=True)
        _check_choice(self, s, "negative_mode", NEGATIVE_MODES)
        _check_choice(self, s, "schedule", SCHEDULES)
        _check_int(self, s, "eval_batch", 1)
        _check_int(self, s, "curve_points", 1)
        _check_choice(self, s, "objective", OBJECTIVES)
        if self.objective in IN_BATCH_OBJECTIVES:
            for name in ("batch_size", "eval_batch"):
                if getattr(self, name) < 2:
                    _fail(s, name, getattr(self, name),
                          f"must be at least 2 with train.objective {self.objective!r} (its negatives "
                          "are the other samples of the batch; one sample has none)")
        _check_real(self, s, "tau_plus")
        check_tau_plus(f"{s}.tau_plus", self.tau_plus)
        _check_real(self, s, "uniformity_weight", positive=True)


def check_tau_plus(where: str, value: float) -> None:
    """τ⁺ in ``(0, 1)``: the debiased loss divides by ``1 − τ⁺`` (:func:`sims.loss.debiased`),
    so 1 is refused with everything above it; 0 would be InfoNCE itself (``objective =
    "infonce"``). One rule and one message for the field and its swept values."""
    if not 0.0 < value < 1.0:
        validate.fail(where, value, "must be in (0, 1), both ends excluded (the debiased loss divides "
                                    "by 1 - tau_plus; tau_plus = 0 is objective \"infonce\")")


#: the default of every field of :class:`MixtureSpec`.
_MIXTURE_DEFAULTS: dict[str, Any] = {f.name: f.default for f in dataclasses.fields(MixtureSpec)}

SECTIONS: dict[str, type] = {"data": MixtureSpec, "model": ModelConfig, "train": TrainConfig}
#: the section of each swept name.
SWEPT_SECTION: dict[str, str] = {n: s for s, names in SWEEPABLE.items() for n in names}


def check_swept(swept: Mapping[str, Any], config: "ExperimentConfig | None" = None) -> None:
    """Validate the swept inputs of ``train(key, swept)`` on the host (one-line ``ValueError``).

    Every name of :data:`SWEPT_NAMES` must be present, and every value (a number or an array
    of them, one per run) pass its configuration field's rule: finite, positive (``gap`` may
    be <= 0), float32-representable, ``temperature >= theory.limits.RUN_MIN_TEMPERATURE``,
    ``tau_plus`` in ``(0, 1)``. With
    ``config`` (the static part they are trained with), their combinations must also pass the
    scale limits of :func:`sims.limits.check_scales`, which include the overlap rules of
    ``gap <= 0`` (:func:`sims.limits.check_gap`: chain only, every set keeps 2 own points).

    Example:
      >>> swept = ExperimentConfig().swept_values()
      >>> check_swept({**swept, "temperature": 0.0})
      Traceback (most recent call last):
      ...
      ValueError: train.temperature: must be >= 1e-06, got 0.0
    """
    import numpy as np

    missing = [n for n in SWEPT_NAMES if n not in swept]
    if missing:
        raise ValueError(f"swept: missing values for {', '.join(missing)}")
    unknown = [n for n in swept if n not in SWEPT_NAMES]
    if unknown:
        raise ValueError(f"swept: unknown names {shown(', '.join(map(str, unknown)))}; "
                         f"valid: {', '.join(SWEPT_NAMES)}")
    for name in SWEPT_NAMES:
        where = f"{SWEPT_SECTION[name]}.{name}"
        values = validate.real_array(where, swept[name])
        low = RUN_MIN_TEMPERATURE if name == "temperature" else None
        for v in np.unique(values):  # each distinct value through the field's own rule
            # (the gap may be <= 0: its sign rules need the data section, limits.check_gap)
            if name == "tau_plus":
                check_tau_plus(where, validate.real(where, v, float32=True))
                continue
            validate.real(where, v, positive=low is None and name != "gap", minimum=low, float32=True)
    if config is not None:
        limits.check_scales(config.data, config.model, swept)


def section_keys(section: str) -> tuple[str, ...]:
    """Valid keys of one section (``data``, ``model`` or ``train``)."""
    return tuple(f.name for f in dataclasses.fields(SECTIONS[section]))


@dataclass(frozen=True)
class ExperimentConfig:
    """One experiment: the three sections together."""

    data: MixtureSpec = field(default_factory=MixtureSpec)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        for name, kind in SECTIONS.items():
            if not isinstance(getattr(self, name), kind):
                validate.fail(name, getattr(self, name), f"must be a {kind.__name__}")
        # structure and scales only: they hold on every machine. The memory estimate is this
        # machine's, checked where runs start (sims.limits.check_memory), so that a run folder
        # written under a larger memory limit is read anywhere.
        limits.check_config(self)

    def swept_values(self) -> dict[str, float]:
        """The sweepable values of this configuration, by flat name."""
        out = {}
        for section, names in SWEEPABLE.items():
            obj = getattr(self, section)
            for n in names:
                out[n] = float(getattr(obj, n))
        return out

    def with_swept(self, **values: float) -> "ExperimentConfig":
        """This configuration with sweepable fields replaced, by flat name.

        Example: ``config.with_swept(gap=0.1, lipschitz=4.0)``. Unknown names are refused.
        """
        new = {}
        for name in values:
            if name not in SWEPT_NAMES:
                raise ValueError(f"{shown(name)}: not a sweepable field; valid: {', '.join(SWEPT_NAMES)}")
        for section, names in SWEEPABLE.items():
            mine = {n: float(values[n]) for n in names if n in values}
            new[section] = dataclasses.replace(getattr(self, section), **mine)
        return ExperimentConfig(**new)

    def static_part(self) -> "ExperimentConfig":
        """This configuration with every sweepable field reset to its default.

        Configurations with equal static parts share one compiled program.
        """
        new = {}
        for section, names in SWEEPABLE.items():
            default = SECTIONS[section]()
            obj = getattr(self, section)
            new[section] = dataclasses.replace(obj, **{n: getattr(default, n) for n in names})
        return ExperimentConfig(**new)

    def as_sections(self) -> dict[str, dict[str, Any]]:
        """Plain dicts, the format of ``train_one`` and of sweep files."""
        return {s: dataclasses.asdict(getattr(self, s)) for s in SECTIONS}


def build_section(section: str, values: Mapping[str, Any] | None) -> Any:
    """Build one section's dataclass from a mapping, refusing unknown keys."""
    if section not in SECTIONS:
        raise ValueError(f"unknown section {shown_repr(section)}; valid sections: {', '.join(SECTIONS)}")
    if values is None:
        values = {}
    if not isinstance(values, Mapping):
        validate.fail(section, values, "must be a mapping of keys to values (a dict)")
    values = dict(values)
    valid = section_keys(section)
    for key in values:
        if key not in valid:
            raise ValueError(f"{section}.{shown(key)}: unknown key; valid keys: {', '.join(valid)}")
    return SECTIONS[section](**values)


def build_config(
    data: Mapping[str, Any] | None = None,
    model: Mapping[str, Any] | None = None,
    train: Mapping[str, Any] | None = None,
) -> ExperimentConfig:
    """Validated :class:`ExperimentConfig` from the three plain sections.

    Example:
      >>> config = build_config({"gap": 0.1}, {"lipschitz": 2.0}, {"steps": 100})
      >>> config.data.gap, config.model.lipschitz, config.train.steps
      (0.1, 2.0, 100)
      >>> build_config({"gap": -0.1, "geometry": "lattice"})
      Traceback (most recent call last):
      ...
      ValueError: data.gap: <= 0 (overlapping sets) is defined for the chain geometry only, got -0.1
    """
    return ExperimentConfig(
        data=build_section("data", data),
        model=build_section("model", model),
        train=build_section("train", train),
    )
