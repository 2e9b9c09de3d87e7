"""Progress a user can read: the numbers, the log lines written when output is not a
terminal, and a real small run's log (generation through a stand-in server, no engine)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from pipeline import progress
from pipeline.progress import Progress, duration, eta_seconds, score_text
from tests.conftest import run_cli
from tests.fake_openai_server import FakeOpenAIServer


def test_eta_and_durations():
    assert eta_seconds(0, 100, 10.0) is None  # nothing done yet: no rate
    assert eta_seconds(25, 100, 10.0) == pytest.approx(30.0)
    assert eta_seconds(100, 100, 10.0) == 0.0
    assert [duration(s) for s in (0, 9.6, 70, 3725, 11 * 3600 + 59)] == \
        ["0s", "10s", "1m10s", "1h02m", "11h00m"]


def test_scores_print_as_people_read_them():
    assert score_text(0.23, [0.052368745896216595, 0.36041886474075696], 100) == \
        "23.0% [5.2, 36.0], n=100"
    assert score_text(None) == "n/a"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_without_a_terminal_a_line_every_interval_and_a_final_one(monkeypatch):
    monkeypatch.delenv("S3FT_PROGRESS", raising=False)
    clock, lines = Clock(), []
    meter = Progress("generate", 200, clock=clock, terminal=False, emit=lines.append, every=30)
    with meter:
        clock.now += 5
        progress.advance(10, tokens=400)  # the first rows, after 5 s of start-up
        for _ in range(9):
            clock.now += 5
            progress.advance(10, tokens=400)  # deep code moves the running step
        meter.log_now()  # what the stage loop does at a shard's end
        clock.now += 50
        progress.advance(100, tokens=4000)
    # 30 s in: the interval line; the ETA's rate counts from the first rows (50 rows in 25 s)
    assert lines[0] == ("generate: 60/200 rows (30.0%), 2,400 tokens, 80.0 tok/s, elapsed 30s, "
                        "ETA 1m10s")
    assert lines[1].startswith("generate: 100/200 rows (50.0%)")  # the shard's end
    # Complete 50 s later: one closing line, not an interval line and then the same again.
    assert len(lines) == 3 and lines[2].startswith("generate: 200/200 rows (100.0%)")
    assert lines[2].endswith(" - done") and "ETA" not in lines[2]
    progress.advance(5)  # nothing runs now: no error, nothing moves
    assert meter.done == 200


def test_a_step_smaller_than_announced_still_ends_complete(monkeypatch):
    # The judge calibration is announced at its most (40 answers) and may ask fewer.
    monkeypatch.delenv("S3FT_PROGRESS", raising=False)
    lines: list[str] = []
    with Progress("judge calibration", 40, "answers", terminal=False, emit=lines.append,
                  every=1e9) as shown:
        progress.advance(16)
        shown.resize(16)
        shown.reach(shown.total)
    assert lines == [lines[-1]] and lines[-1].startswith("judge calibration: 16/16 answers (100.0%)")
    assert lines[-1].endswith(" - done")


def test_switched_off_it_says_nothing(monkeypatch):
    monkeypatch.setenv("S3FT_PROGRESS", "0")
    lines = []
    with Progress("judge", 3, terminal=False, emit=lines.append, every=0) as meter:
        meter.update(3)
    assert lines == []


def test_quiet_work_does_not_move_the_step():
    with Progress("paraphrase", 4, terminal=False, emit=lambda _: None) as meter:
        progress.advance(2)
        with progress.quiet():
            progress.advance(2)  # e.g. judging the paraphrases just counted
        assert meter.done == 2


def test_a_real_run_logs_where_it_is(tmp_path):
    rows = [{"question": f"What is {n} + {n}?", "answer": f"{n} + {n} = {2 * n}\n#### {2 * n}"}
            for n in range(1, 7)]
    data = tmp_path / "rows.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with FakeOpenAIServer() as server:
        args = ["--task", "gsm8k", "--data", str(data), "--backend", "openai", "--base-url",
                server.base_url, "--model", server.served_model, "--shard-size", "4",
                "--out", str(tmp_path / "out")]
        env = {"S3FT_CACHE_DIR": str(tmp_path / "cache"), "S3FT_PROGRESS_INTERVAL": "0.001",
               "S3FT_PROGRESS": "1"}
        first = run_cli(*args, timeout=300, env=env)
        again = run_cli(*args, timeout=300, env=env)
        quiet = run_cli(*args, "--no-progress", "--fresh", timeout=300, env=env)
    assert first.returncode == again.returncode == quiet.returncode == 0, first.stderr[-2000:]
    log = first.stderr
    assert "generate: 6 rows in 2 shards, 0 done earlier, 2 to go" in log
    assert "generate: 4/6 rows (66.7%)" in log  # at the first shard's end, tokens counted
    assert "generate: 6/6 rows (100.0%)" in log and "tok/s" in log
    assert "judge: 6/6 rows (100.0%)" in log and " - done" in log
    assert "generate: 6 rows in 2 shards, 2 done earlier, 0 to go" in again.stderr
    assert "rows (" not in quiet.stderr  # --no-progress: no progress lines


def test_the_vllm_hook_passes_rendered_prompts_through_and_counts_finished_requests():
    prompts = ["a", "b"]
    assert progress.vllm_bar(prompts, desc="Rendering prompts") is prompts
    with Progress("generate", 2, terminal=False, emit=lambda _: None) as meter:
        bar = progress.vllm_bar(total=2, desc="Processed prompts", postfix="")
        bar.update(4)  # vLLM passes a request's outputs: k=4 samples are one row
        bar.update(4)
        bar.close()
    assert meter.done == 2


class FakeEngineCore:
    """vLLM's engine core as ``LLM.generate`` reaches it: each step, ``get_output`` gives the
    sequences that decoded, their new tokens, and a finish reason."""

    def __init__(self, steps):
        self.steps = list(steps)

    def get_output(self):
        return SimpleNamespace(outputs=[
            SimpleNamespace(request_id=r, new_token_ids=[0] * n, finish_reason="stop" if done else None)
            for r, n, done in self.steps.pop(0)])


def test_tokens_move_the_line_while_the_engine_decodes_and_the_eta_counts_what_is_left(monkeypatch):
    """Three sequences, none finished for the first steps: the line shows the tokens decoded so
    far; once one finishes, what the others still have to decode sets the ETA."""
    monkeypatch.delenv("S3FT_PROGRESS", raising=False)
    clock, lines = Clock(), []
    core = FakeEngineCore([
        [("0", 20, False), ("1", 20, False)],  # "2" is not scheduled yet
        [("0", 20, False), ("1", 20, False), ("2", 20, False)],
        [("0", 20, True), ("1", 20, False), ("2", 20, False)],
    ])
    with Progress("generate", 3, clock=clock, terminal=False, emit=lines.append, every=1) as meter:
        with progress.DecodingMeter(SimpleNamespace(engine_core=core), sequences=3, cap=200) as decoding:
            clock.now += 10
            core.get_output()
            assert meter.tokens == 40 and meter.done == 0
            assert lines[-1].startswith("generate: 0/3 rows (0.0%), 40 tokens")
            assert "ETA" not in lines[-1]  # no rate yet from one step
            # A sequence has not started (prefill under way): nothing is known yet.
            assert decoding.left() is None
            clock.now += 10
            core.get_output()
            assert meter.tokens == 40 + 20 + 20 + 20
            clock.now += 10
            core.get_output()
            progress.advance(1)  # the vLLM bar: request "0" finished
            # "0" finished at 60 tokens: "2" (40) is expected to reach it, "1" (60, none finished
            # longer) may go on to the cap.
            assert decoding.left() == (60 - 40) + (200 - 60) == 160
            # 120 tokens in the 20 s after the first ones: 6 tok/s, so 160 left are 26.7 s
            assert meter.line() == ("generate: 1/3 rows (33.3%), 160 tokens, 5.3 tok/s, "
                                    "elapsed 30s, ETA 27s")
        assert meter.decoding is None
        assert "get_output" not in vars(core)  # the method is back


def test_lm_eval_scoring_reports_choices_in_chunks():
    from pipeline.evaluation import general as mc_eval

    class FakeLM:
        def __init__(self) -> None:
            self.calls: list[int] = []

        def loglikelihood(self, requests, disable_tqdm=False):
            self.calls.append(len(requests))
            return [(-float(r), False) for r in requests]

    lm, lines = FakeLM(), []
    mc_eval._count_loglikelihoods(lm)
    requests = list(range(600))
    import logging

    handler = logging.Handler()
    handler.emit = lambda record: lines.append(record.getMessage())
    logging.getLogger("pipeline.progress").addHandler(handler)
    logging.getLogger("pipeline.progress").setLevel(logging.INFO)
    try:
        assert lm.loglikelihood(requests, disable_tqdm=True) == [(-float(r), False) for r in requests]
    finally:
        logging.getLogger("pipeline.progress").removeHandler(handler)
    assert lm.calls == [256, 256, 88]  # same answers, request for request, in chunks
    assert lines[-1].startswith("lm-eval log-likelihoods: 600/600 choices (100.0%)")


def test_an_engine_without_the_core_hook_runs_unmetered():
    """The meter reads a vLLM internal; an engine without it still generates, rows only."""
    engine = SimpleNamespace()
    with (Progress("generate", 1, terminal=False, emit=lambda _: None) as meter,
          progress.DecodingMeter(engine, sequences=1, cap=10)):
        progress.advance(1)
    assert meter.done == 1 and meter.tokens == 0 and vars(engine) == {}
