"""The curation stages, in the order a run applies them (:mod:`pipeline.curate`):

``load`` → ``generate`` → ``judge`` → ``admit`` → ``paraphrase`` → ``judge_paraphrase`` →
``admit_paraphrase`` → ``select`` → ``export``.

Each stage is one module with one job; the contract they share (declared columns, settings,
the resumable shard loop) is :mod:`pipeline.stage`.
"""
