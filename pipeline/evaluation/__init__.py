"""Evidence: scoring models in-domain and on general benchmarks, and the S3FT/SFT/SDFT table.

:mod:`~pipeline.evaluation.scoring` (in-domain tasks and the general-benchmark loop),
:mod:`~pipeline.evaluation.general` (lm-eval multiple choice), :mod:`~pipeline.evaluation.benchmark_data`
(local benchmark files), :mod:`~pipeline.evaluation.lm_eval_tasks` (lm-eval's task YAMLs on
local data), :mod:`~pipeline.evaluation.scoreboard` (tables and chart) and
:mod:`~pipeline.evaluation.comparison` (curate, train every mode, score: ``pipeline.compare``).
"""
