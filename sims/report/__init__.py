"""Results → tables and figures (no training, except F4 re-training three runs for their
parameters, and no solving, except F8's point-level class minimum on three cells per
geometry): :mod:`sims.report.analysis` reads and aggregates sweep results,
:mod:`sims.report.figures` draws F1–F12 (:mod:`sims.report.fig_digits` F13), :mod:`sims.report.reproduce` runs the bundled sweeps
and writes every figure (``make reproduce``)."""
