"""What a finished run tells its user: :mod:`~pipeline.reporting.summary` (``summary.json`` and
the closing table), :mod:`~pipeline.reporting.report` (``report.html``),
:mod:`~pipeline.reporting.card` (the dataset card) and :mod:`~pipeline.reporting.hub` (the
Hub upload behind ``python -m pipeline.push``)."""
