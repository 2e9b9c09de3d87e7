"""The benchmark files every test of this folder reads (under S3FT_DATA_DIR)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.evaluation import benchmark_data as bd
from pipeline.evaluation import small_model_benchmarks as small


@pytest.fixture(scope="session")
def root() -> Path:
    root = bd.data_dir()
    missing = [f for f in (bd.ARC_CHALLENGE_FILE, small.PIQA_FILE) if not (root / f).is_file()]
    if missing:
        pytest.fail(f"benchmark data not found under {root} ({missing}): set S3FT_DATA_DIR to the "
                    f"datasets folder (here: /work/shared/data)")
    return root
