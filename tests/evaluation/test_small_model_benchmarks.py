"""Loaders for the benchmarks a small model reads above chance, on the real files under
S3FT_DATA_DIR: row counts and label balances as each folder's README states them, the doc layout
lm-eval's task reads, and one clear error per kind of bad file."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from pipeline.evaluation import benchmark_data as bd
from pipeline.evaluation import small_model_benchmarks as small

# Rows and gold balance, from each folder's README.md.
EXPECTED = {
    "piqa": (1838, {0: 910, 1: 928}),
    "arc_easy": (2376, None),
    "lambada_openai": (5153, {0: 5153}),
    "winogrande": (1267, {0: 628, 1: 639}),
    "sciq": (1000, {3: 1000}),
    "boolq": (3270, {1: 2033, 0: 1237}),
    "openbookqa": (500, {0: 138, 1: 126, 2: 132, 3: 104}),
    "commonsense_qa": (1221, None),
}


@pytest.mark.parametrize("benchmark", sorted(EXPECTED))
def test_every_row_loads_with_unique_ids_and_a_gold_among_the_choices(root, benchmark):
    items = bd.load_benchmark(benchmark, root)
    rows, balance = EXPECTED[benchmark]
    assert len(items) == rows and len({i.id for i in items}) == rows
    assert all(i.benchmark == benchmark and 0 <= i.gold < len(i.choices) for i in items)
    assert all(i.labels[i.gold] == 1 and sum(i.labels) == 1 for i in items)
    if balance:
        assert Counter(i.gold for i in items) == balance


def test_arc_easy_keys_and_choice_counts(root):
    items = bd.load_benchmark("arc_easy", root)
    assert Counter(len(i.choices) for i in items) == {4: 2365, 3: 7, 5: 4}
    assert sum(i.doc["answerKey"].isdigit() for i in items) == 97
    assert all(i.doc["choices"]["label"][i.gold] == i.doc["answerKey"] for i in items)


def test_docs_have_the_hub_layout_lm_eval_reads(root):
    first = {name: bd.load_benchmark(name, root)[0] for name in EXPECTED}
    assert set(first["piqa"].doc) == {"goal", "sol1", "sol2", "label"}
    assert first["lambada_openai"].choices == (" signs",)  # the last space-separated word
    assert first["lambada_openai"].question + first["lambada_openai"].choices[0] == \
        first["lambada_openai"].doc["text"]
    assert first["winogrande"].doc == {"sentence": first["winogrande"].question, "option1": "Sarah",
                                       "option2": "Maria", "answer": "2"}
    assert first["winogrande"].gold == 1
    assert first["sciq"].choices[3] == first["sciq"].doc["correct_answer"] == "oxidants"
    assert first["boolq"].doc["label"] == 0 and first["boolq"].choices == ("no", "yes")  # "false"
    assert set(first["openbookqa"].doc) == {"id", "question_stem", "choices", "answerKey"}
    assert first["openbookqa"].gold == 1  # answerKey B
    csqa = first["commonsense_qa"]
    assert csqa.doc["choices"]["label"] == ["A", "B", "C", "D", "E"] and csqa.doc["answerKey"] == "A"
    assert csqa.doc["question"] == csqa.question and csqa.doc["question_concept"] == "revolving door"


def test_aliases():
    assert bd.canonical_name("lambada") == "lambada_openai"
    assert bd.canonical_name("CommonsenseQA") == "commonsense_qa"


# --- bad input: one error naming the file, the row and the fix ---------------------------------


def write(root: Path, relative: str, text: str) -> Path:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_piqa_labels_must_align_with_the_rows(tmp_path):
    row = json.dumps({"goal": "g", "sol1": "a", "sol2": "b"})
    write(tmp_path, small.PIQA_FILE, f"{row}\n{row}\n")
    write(tmp_path, small.PIQA_LABELS, "0\n")
    with pytest.raises(bd.BenchmarkDataError, match=r"valid-labels.lst: 1 labels for the 2 rows"):
        small.load_piqa(tmp_path)
    write(tmp_path, small.PIQA_LABELS, "0\n2\n")
    with pytest.raises(bd.BenchmarkDataError, match=r"valid-labels.lst: line 2: label '2' is not 0 or 1"):
        small.load_piqa(tmp_path)


def test_a_missing_field_names_the_line_and_the_layout(tmp_path):
    write(tmp_path, small.WINOGRANDE_FILE, json.dumps({"sentence": "A _ b", "option1": "x"}) + "\n")
    with pytest.raises(bd.BenchmarkDataError, match=r"dev.converted.jsonl: line 1: missing field\(s\) "
                                                    r"\['option2', 'answer'\]; expected the WinoGrande"):
        small.load_winogrande(tmp_path)


def test_boolq_label_and_winogrande_blank(tmp_path):
    row = {"question": "q", "passage": "p", "idx": 0, "label": "maybe"}
    write(tmp_path, small.BOOLQ_FILE, json.dumps(row) + "\n")
    with pytest.raises(bd.BenchmarkDataError, match="val.jsonl: line 1: label 'maybe' is not true or false"):
        small.load_boolq(tmp_path)
    write(tmp_path, small.BOOLQ_FILE, json.dumps({**row, "label": True}) + "\n")
    assert small.load_boolq(tmp_path)[0].gold == 1  # Google's original writes a JSON boolean
    row = {"sentence": "no blank", "option1": "a", "option2": "b", "answer": "1"}
    write(tmp_path, small.WINOGRANDE_FILE, json.dumps(row) + "\n")
    with pytest.raises(bd.BenchmarkDataError, match="exactly one '_' blank"):
        small.load_winogrande(tmp_path)


def test_lambada_and_sciq_shapes(tmp_path):
    write(tmp_path, small.LAMBADA_FILE, json.dumps({"text": "oneword"}) + "\n")
    with pytest.raises(bd.BenchmarkDataError, match="lambada_test.jsonl: line 1: 'text' needs a context"):
        small.load_lambada(tmp_path)
    write(tmp_path, small.SCIQ_FILE, json.dumps({"question": "q"}))
    with pytest.raises(bd.BenchmarkDataError, match="test.json: expected a JSON list"):
        small.load_sciq(tmp_path)


def test_commonsense_qa_needs_five_lettered_choices(tmp_path):
    choices = [{"label": letter, "text": letter.lower()} for letter in "ABCD"]
    row = {"id": "c1", "answerKey": "A", "question": {"stem": "q", "choices": choices}}
    write(tmp_path, small.COMMONSENSEQA_FILE, json.dumps(row) + "\n")
    with pytest.raises(bd.BenchmarkDataError, match=r"line 1: choices are labelled \['A', 'B', 'C', 'D'\]"):
        small.load_commonsense_qa(tmp_path)


def test_missing_file_names_s3ft_data_dir(tmp_path):
    for benchmark in EXPECTED:
        with pytest.raises(bd.BenchmarkDataError, match="S3FT_DATA_DIR"):
            bd.load_benchmark(benchmark, tmp_path)
