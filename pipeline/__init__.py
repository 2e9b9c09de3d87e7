"""s3ft: curate fine-tuning data the S3FT way with vLLM, and train on it with TRL."""

__version__ = "0.1.0"
