from collections import Counter

import polars as pl

import judges
from pipeline.stage import append_error
from pipeline.stages.select import SelectStage


def test_s3ft_selection_rule():
    frame = pl.DataFrame({
        "id": ["a", "b", "c", "d", "e"],
        "gold": ["G1", "G2", "G3", "G4", "G5"],
        "candidate": ["C1", "C2", "C3", None, "C5"],
        "verdict": [True, False, False, False, True],
        "admitted": [True, False, False, False, False],  # e: correct, but not admitted
        "judge_rule": ["r"] * 5, "judge_extracted": [None] * 5, "judge_reason": [""] * 5,
        "paraphrase": [None, "P2", "P3", "P4", "P5"],
        "paraphrase_verdict": [None, True, True, True, True],
        "paraphrase_admitted": [None, True, False, True, True],
        "paraphrase_judge_rule": ["r"] * 5, "paraphrase_judge_extracted": [None] * 5,
        "paraphrase_judge_reason": [""] * 5,
    })
    stats = Counter()
    out = SelectStage(judges.get("gsm8k")).process(frame, stats)
    assert out["source"].to_list() == ["model", "paraphrase", "gold", "paraphrase", "paraphrase"]
    assert out["target"].to_list() == ["C1", "P2", "G3", "P4", "P5"]
    assert stats == Counter(source_model=1, source_paraphrase=3, source_gold=1)


def test_errors_accumulate_per_stage():
    frame = pl.DataFrame({"id": ["a", "b"]})
    frame = append_error(frame, "generate", [None, "prompt_too_long"])
    frame = append_error(frame, "judge", ["judge_error: boom", None])
    assert frame["error"].to_list() == ["judge: judge_error: boom", "generate: prompt_too_long"]
