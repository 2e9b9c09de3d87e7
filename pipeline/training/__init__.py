"""Fine-tuning on a curated ``train.parquet``: :mod:`~pipeline.training.data` (the rows each
mode trains on) and :mod:`~pipeline.training.trainer` (the TRL ``SFTTrainer`` step). The
command line is ``python -m pipeline.train`` (:mod:`pipeline.train`)."""
