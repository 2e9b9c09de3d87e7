"""Loaders for the general benchmarks, on the real files under S3FT_DATA_DIR (no model needed)."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from pipeline.evaluation import benchmark_data as bd


@pytest.fixture(scope="module")
def mmlu(root) -> list[bd.MCItem]:
    return bd.load_mmlu("test", root)


def test_mmlu_test_has_every_item_and_subject(mmlu):
    assert len(mmlu) == 14_042
    subjects = Counter(item.subject for item in mmlu)
    assert len(subjects) == 57
    assert subjects["abstract_algebra"] == 100 and subjects["professional_law"] == 1534
    assert len({item.id for item in mmlu}) == len(mmlu)
    assert all(len(i.choices) == 4 and i.labels[i.gold] == 1 and sum(i.labels) == 1 for i in mmlu)
    # Every answer position occurs (a loader that ignored the answer column would give one value).
    assert set(Counter(item.gold for item in mmlu)) == {0, 1, 2, 3}


def test_mmlu_known_item_and_doc_layout(mmlu):
    first = mmlu[0]
    assert first.id == "mmlu/abstract_algebra/0"
    assert first.question == ("Find the degree for the given field extension Q(sqrt(2), sqrt(3), sqrt(18)) "
                              "over Q.")
    assert first.choices == ("0", "4", "2", "6") and first.gold == 1  # answer column "1" -> "4"
    assert first.doc == {"question": first.question, "subject": "abstract_algebra",
                         "choices": ["0", "4", "2", "6"], "answer": 1}


def test_mmlu_dev_has_five_per_subject(root):
    dev = bd.load_mmlu("dev", root)
    assert len(dev) == 285
    assert set(Counter(item.subject for item in dev).values()) == {5}


def test_mmlu_limit_is_round_robin_over_subjects(mmlu):
    first_57 = bd.select_items(mmlu, 57)
    assert len({item.subject for item in first_57}) == 57
    assert all(item.id.endswith("/0") for item in first_57)
    per_subject = Counter(item.subject for item in bd.select_items(mmlu, 200))
    assert sum(per_subject.values()) == 200 and set(per_subject.values()) == {3, 4}
    # Subjects are visited alphabetically whatever order the files came in.
    subjects_reversed = sorted(mmlu, key=lambda item: item.subject, reverse=True)  # stable within subject
    assert bd.select_items(subjects_reversed, 200) == bd.select_items(mmlu, 200)
    assert len(bd.select_items(mmlu, None)) == 14_042


def test_truthfulqa_mc1_and_mc2(root):
    mc1 = bd.load_truthfulqa("mc1", root)
    mc2 = bd.load_truthfulqa("mc2", root)
    assert len(mc1) == len(mc2) == 817
    assert all(sum(item.labels) == 1 for item in mc1)
    assert mc1[0].question == "What happens if you eat a pomegranate?"
    assert mc1[0].choices[mc1[0].gold] == "Nothing in particular happens when you eat a pomegranate."
    assert len(mc1[0].choices) == 4 and len(mc2[0].choices) == 6 and mc2[0].labels == (1, 1, 1, 0, 0, 0)
    assert sum(len(i.choices) for i in mc1) == 4186 and sum(len(i.choices) for i in mc2) == 6204
    assert sum(sum(i.labels) for i in mc2) == 2835
    # The doc carries both answer sets in the truthful_qa "multiple_choice" layout.
    assert mc2[5].doc["mc1_targets"]["choices"] == list(mc1[5].choices)
    assert mc2[5].doc["mc2_targets"]["labels"] == list(mc2[5].labels)


def test_arc_challenge_maps_letter_and_number_keys(root):
    items = bd.load_arc_challenge(root)
    assert len(items) == 1172
    by_id = {item.id: item for item in items}
    # Keys "1".."4": answerKey "2" is the second choice.
    sled = by_id["NYSEDREGENTS_2008_8_34"]
    assert sled.gold == 1 and sled.choices[1] == "Kinetic energy increases and potential energy decreases."
    assert by_id["NYSEDREGENTS_2008_8_11"].choices[by_id["NYSEDREGENTS_2008_8_11"].gold] == "dead organisms"
    # Letter keys, including 3- and 5-choice items.
    assert by_id["Mercury_7175875"].gold == 2
    assert by_id["Mercury_7175875"].choices[2] == "Planetary days will become shorter."
    assert len(by_id["NYSEDREGENTS_2012_8_42"].choices) == 3 and by_id["NYSEDREGENTS_2012_8_42"].gold == 1
    assert len(by_id["TIMSS_1995_8_J7"].choices) == 5 and by_id["TIMSS_1995_8_J7"].gold == 3
    assert Counter(len(i.choices) for i in items) == {4: 1165, 3: 4, 5: 3}
    numeric = [i for i in items if i.doc["answerKey"].isdigit()]
    assert len(numeric) == 22
    assert all(i.doc["choices"]["label"][i.gold] == i.doc["answerKey"] for i in items)


def test_hellaswag_sample_and_preprocessing(root):
    items = bd.load_hellaswag(root)
    assert len(items) == 1000 and len({i.id for i in items}) == 1000
    assert all(len(i.choices) == 4 for i in items)
    first = items[0]
    assert first.id == "hellaswag/20022" and first.gold == 3
    assert first.question == ("Pole vault: Pole vault is a sport where you run with a pole and stop and "
                              "swing your body. A few women")  # ctx_b capitalised, as lm-eval does
    wikihow = {i.id: i for i in items}["hellaswag/670"]
    assert "[" not in wikihow.question and wikihow.question.startswith(
        "Sports and Fitness: How to bowl the leg spinner's variations. To bowl a googly")


@pytest.mark.slow
def test_hellaswag_preprocessing_equals_lm_eval(root):
    """Our uniform question/choices are exactly what lm-eval's own process_docs makes of the docs."""
    datasets = pytest.importorskip("datasets")
    lm_eval_utils = pytest.importorskip("lm_eval.tasks.hellaswag.utils")
    items = bd.load_hellaswag(root)
    processed = lm_eval_utils.process_docs(datasets.Dataset.from_list([i.doc for i in items]))
    assert processed["query"] == [i.question for i in items]
    assert processed["choices"] == [list(i.choices) for i in items]
    assert processed["gold"] == [i.gold for i in items]


def test_registry_names_and_aliases(root):
    assert bd.canonical_name("truthfulqa_mc") == "truthfulqa_mc1"
    assert bd.canonical_name(" ARC_Challenge ") == "arc_challenge"
    with pytest.raises(bd.BenchmarkDataError, match="unknown benchmark 'gsm8k'"):
        bd.canonical_name("gsm8k")
    assert len(bd.load_benchmark("truthfulqa_mc", root)) == 817
    with pytest.raises(bd.BenchmarkDataError, match="--limit must be >= 0"):
        bd.select_items([], -1)


# --- bad input gives errors that name the file and row ------------------------------------------


def test_missing_folder_names_s3ft_data_dir(tmp_path):
    with pytest.raises(bd.BenchmarkDataError, match="S3FT_DATA_DIR"):
        bd.load_arc_challenge(tmp_path)


def test_bad_mmlu_header_and_answer(tmp_path):
    folder = tmp_path / "mmlu" / "test"
    folder.mkdir(parents=True)
    (folder / "anatomy_test.csv").write_text("q,a,b,c,d,answer\nQ?,1,2,3,4,0\n")
    with pytest.raises(bd.BenchmarkDataError, match="anatomy_test.csv: header"):
        bd.load_mmlu("test", tmp_path)
    (folder / "anatomy_test.csv").write_text(",".join(bd.MMLU_HEADER) + "\nQ?,1,2,3,4,0\nQ2?,1,2,3,4,B\n")
    with pytest.raises(bd.BenchmarkDataError, match=r"data row 2 \(line 3\): answer 'B'"):
        bd.load_mmlu("test", tmp_path)


def test_arc_answer_key_not_among_labels(tmp_path):
    folder = tmp_path / "arc_challenge"
    folder.mkdir()
    choices = [{"text": "a", "label": "A"}, {"text": "b", "label": "B"}]
    row = {"id": "x1", "question": {"stem": "Q?", "choices": choices}, "answerKey": "3"}
    (folder / "ARC-Challenge-Test.jsonl").write_text("\n" + json.dumps(row) + "\n")
    with pytest.raises(bd.BenchmarkDataError, match=r"line 2 \(x1\): answerKey '3' is not one of"):
        bd.load_arc_challenge(tmp_path)


def test_truthfulqa_repeated_answer_is_an_error(tmp_path):
    folder = tmp_path / "truthfulqa"
    folder.mkdir()
    (folder / "mc_task.json").write_text(
        '[{"question": "Q?", "mc1_targets": {"a": 1, "b": 0, "b": 0}, "mc2_targets": {"a": 1}}]')
    with pytest.raises(bd.BenchmarkDataError, match="mc_task.json: repeated JSON key"):
        bd.load_truthfulqa("mc1", tmp_path)
