"""Auditing a curated dataset: a person (or a script, or a stronger model) labels a random sample
of ``train.parquet``'s targets right / partial / wrong, and the labels become the targets'
precision with 95 % intervals, in ``summary.json``, the report and the dataset card.

- :mod:`.sample`: the stratified sample, drawn once per seed and kept in ``<run>/audit/``;
- :mod:`.labels`: the append-only label file, ``--import`` and ``--export``;
- :mod:`.estimate`: precision per source and per deciding rule, the wrong targets it implies
  in the whole dataset, and two auditors' agreement;
- :mod:`.server`: the labelling page (Starlette on 127.0.0.1).

The command is ``s3ft audit`` (:mod:`pipeline.audit`).
"""
