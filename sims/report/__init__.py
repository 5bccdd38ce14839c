"""Results → tables and figures (no training, except F4 re-training three runs for their
parameters): :mod:`sims.report.analysis` reads and aggregates sweep results,
:mod:`sims.report.figures` draws F1–F8, :mod:`sims.report.reproduce` runs the bundled sweeps
and writes every figure (``make reproduce``)."""
