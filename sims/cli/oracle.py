"""``infonce-lab oracle``: the class minimum of InfoNCE (or another objective) over
L-Lipschitz maps (docs/theory.md §3.F).

``infonce-lab oracle --data gap=0.08 n_clusters=4 ... --model out_dim=4 --train negatives=8
temperature=0.3 --lipschitz 0.05 2 30 [--level points] [--json]`` prints one row per ``L``:
the class minimum on the configuration's data (every ``L``-Lipschitz map into the unit
ball, :func:`theory.lipschitz_minimum`), its regime and geometry. ``--file FILE.npz`` takes
the arrays ``points``, ``set_ids`` and ``cluster_ids`` instead of generated data (``d``,
``K`` and ``τ`` still come from ``--model`` and ``--train``). ``--train objective=ntxent``
(any :mod:`sims.loss` objective) minimises that objective instead, on batches of
``train.batch_size``, with ``--level points``. This is what a trained
network of the same class is compared with: its loss can never be below the class minimum
beyond estimation noise.
"""

from __future__ import annotations

from sims.cli.common import (add_section_arguments, config_from_args, fmt, load_point_sets, positive_float,
                             strict_json)
from theory.limits import CERTIFY_MAX_POINTS

_COLUMNS = ("lipschitz", "regime", "loss", "loss_se", "within_diameter", "between_distance", "max_ratio")
#: the columns ``--certify`` adds (docs/theory.md §3.G).
_CERTIFIED = ("lower_bound", "bound_gap", "certified_regime")


def run_oracle(args) -> int:
    import theory
    from sims.oracle import check_certify, check_level, class_minimum, objective_arguments

    from theory import limits, validate

    # the command's own arguments, under their own names, before any work
    for lip in args.lipschitz:
        validate.real("--lipschitz", lip, positive=True, float32=True)
    if len(args.lipschitz) > limits.ORACLE_MAX_LIPSCHITZ_VALUES:
        validate.fail("--lipschitz", len(args.lipschitz),
                      f"at most {limits.ORACLE_MAX_LIPSCHITZ_VALUES:,} values (time)")
    seed = validate.seed("--seed", args.seed)
    config = config_from_args(args)
    dim = validate.integer("model.out_dim", config.model.out_dim, minimum=1, maximum=limits.ORACLE_MAX_DIM,
                           reason="memory of the oracle")
    k = validate.integer("train.negatives", config.train.negatives, minimum=1,
                         maximum=limits.ORACLE_MAX_NEGATIVES, reason="int32 in the oracle's compiled search")
    if config.train.temperature < limits.ORACLE_MIN_TEMPERATURE:
        validate.fail("train.temperature", config.train.temperature,
                      f"at least {limits.ORACLE_MIN_TEMPERATURE:.4g} for the oracle (kernels "
                      "exp(1/(4·temperature)) of atoms in the ball must stay below e^650)")
    if args.level == "points" and k * dim > limits.ORACLE_MAX_POINT_NEGATIVES_DIM:
        validate.fail("train.negatives", k, f"at most {limits.ORACLE_MAX_POINT_NEGATIVES_DIM // dim:,} with "
                                            f"model.out_dim={dim} at the point level (memory)")
    if not args.file and sum(config.data.set_counts) > limits.ORACLE_MAX_SETS:
        validate.fail("data.sets_per_cluster", config.data.sets_per_cluster,
                      f"at most {limits.ORACLE_MAX_SETS:,} sets in all for the oracle (memory and time), "
                      f"{sum(config.data.set_counts):,} with data.n_clusters={config.data.n_clusters}")
    if args.certify:  # the sizes of a --file are checked by theory.lipschitz_minimum itself
        check_certify(config, args.level, "--certify", sizes=not args.file)
    check_level(config, args.level, "--level")
    tr = config.train
    certify = {"certify": True} if args.certify else {}
    columns = _COLUMNS + (_CERTIFIED if args.certify else ())
    if args.file:
        points, set_ids, cluster_ids = load_point_sets(args.file)
        records = theory.lipschitz_minimum(points, set_ids, cluster_ids, args.lipschitz,
                                           config.model.out_dim, config.train.negatives,
                                           config.train.temperature, level=args.level, seed=seed,
                                           **objective_arguments(config, args.certify), **certify)
        source = args.file
    else:
        records = class_minimum(config, args.lipschitz, args.level, seed=seed, **certify)
        from sims.data import describe

        source = describe(config.data)
    if args.json:
        print(strict_json([r.row() for r in records]))
        return 0
    first = records[0]
    infonce = tr.objective == "infonce"
    name = "InfoNCE" if infonce else f"{tr.objective} (batches of {tr.batch_size})"
    print(f"class minimum ({args.level} level) of {name} over L-Lipschitz maps into the unit ball; "
          f"{source}; d={config.model.out_dim}, K={config.train.negatives}, "
          f"tau={config.train.temperature:g}")
    if infonce:
        print(f"references: collapsed log(1+K) = {first.loss_collapsed:.6f}, clusters l*_m = "
              f"{first.loss_clusters:.6f}, sets unconstrained = {first.loss_unconstrained:.6f}")
    else:
        print(f"references: best constant map = {first.loss_collapsed:.6f}")
    if args.certify:
        print("certified (docs/theory.md §3.G): lower_bound holds for every map of the class in every "
              "output dimension; certified_regime is the regime of every minimiser, or undecided")
    rows = [[fmt(r.row()[c]) for c in columns] for r in records]
    widths = [max(len(c), *(len(row[i]) for row in rows)) for i, c in enumerate(columns)]
    print("  ".join(c.rjust(w) for c, w in zip(columns, widths)))
    for row in rows:
        print("  ".join(v.rjust(w) for v, w in zip(row, widths)))
    return 0


def register(sub) -> None:
    p = sub.add_parser(
        "oracle", help="class minimum of InfoNCE over L-Lipschitz maps into the ball",
        description="Minimise InfoNCE over every L-Lipschitz map into the unit ball on a "
        "configuration's data (or on --file), for each --lipschitz value (docs/theory.md §3.F). d, K and tau "
        "come from --model out_dim, --train negatives and --train temperature.")
    add_section_arguments(p)
    p.add_argument("--lipschitz", type=positive_float, nargs="+", required=True, metavar="L",
                   help="one or more Lipschitz bounds L > 0")
    p.add_argument("--level", choices=("sets", "points"), default="sets",
                   help="set-constant maps or one embedding per point (InfoNCE exact at both levels, "
                        "another objective estimated)")
    p.add_argument("--file", metavar="FILE.npz", help="points, set_ids, cluster_ids instead of --data")
    p.add_argument("--seed", type=int, default=0, help="seed of the solver's random starts, 0 to 2^32 - 1 (0)")
    p.add_argument("--certify", action="store_true",
                   help="also a certified lower bound and the certified regime of every minimiser "
                        "(InfoNCE; at the point level also ntxent, dcl, spectral, align_uniform on the "
                        f"oracle's fixed batches; at most {CERTIFY_MAX_POINTS} points; docs/theory.md §3.G)")
    p.add_argument("--json", action="store_true", help="print one JSON list of records")
    p.set_defaults(handler=run_oracle)
