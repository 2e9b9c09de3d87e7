import subprocess
import sys
import time

import pytest

from pipeline.config import RunConfig, parse_config, stable_hash
from pipeline.errors import UsageError
from tests.conftest import PROJECT


def parse(argv):
    return parse_config(RunConfig, argv, description="test")


def test_defaults_then_yaml_then_command_line(tmp_path):
    assert parse([]).max_tokens is None  # the task file's generation.max_tokens then
    config_file = tmp_path / "c.yaml"
    config_file.write_text("max_tokens: 64\nlimit: 10\nparaphrase_all: true\n")
    from_yaml = parse(["--config", str(config_file)])
    assert (from_yaml.max_tokens, from_yaml.limit, from_yaml.paraphrase_all) == (64, 10, True)
    overridden = parse(["--config", str(config_file), "--max-tokens", "32", "--no-paraphrase-all"])
    assert (overridden.max_tokens, overridden.limit, overridden.paraphrase_all) == (32, 10, False)


def test_resume_is_the_default_and_fresh_overrides_it():
    assert parse([]).fresh is False
    assert parse(["--fresh"]).fresh is True
    assert parse(["--fresh", "--resume"]).fresh is False


def test_the_loop_guard_is_on_unless_turned_off(tmp_path):
    assert parse([]).loop_guard is True
    assert parse(["--no-loop-guard"]).loop_guard is False
    config_file = tmp_path / "c.yaml"
    config_file.write_text("loop_guard: false\n")
    assert parse(["--config", str(config_file)]).loop_guard is False
    assert parse(["--config", str(config_file), "--loop-guard"]).loop_guard is True


def test_the_loop_guard_is_not_claimed_where_the_backend_cannot_apply_it():
    from pipeline.backends.loop_guard import LoopGuard
    from pipeline.curate import _loop_guard

    assert _loop_guard(RunConfig()) == LoopGuard()
    assert _loop_guard(RunConfig(engine="ray")) == LoopGuard()
    assert _loop_guard(RunConfig(loop_guard=False)) is None
    # An OpenAI-compatible server decides its own decoding: no guard in the stage keys.
    assert _loop_guard(RunConfig(backend="openai", base_url="http://127.0.0.1:1/v1")) is None


def test_unknown_yaml_option_is_named(tmp_path):
    config_file = tmp_path / "c.yaml"
    config_file.write_text("max_tokenz: 64\n")
    with pytest.raises(UsageError, match="max_tokenz"):
        parse(["--config", str(config_file)])


def test_bad_flag_value_is_rejected():
    with pytest.raises(SystemExit):
        parse(["--limit", "many"])


def test_stable_hash_ignores_key_order():
    assert stable_hash({"a": 1, "b": [1, 2]}) == stable_hash({"b": [1, 2], "a": 1})
    assert stable_hash({"a": 1}) != stable_hash({"a": 2})


def test_help_is_instant_and_lists_options():
    began = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "pipeline.run", "--help"], cwd=PROJECT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    assert "--shard-size" in result.stdout and "--max-tokens" in result.stdout
    # --help must not import vLLM/torch (those take many seconds); check it did not load them.
    probe = subprocess.run(
        [sys.executable, "-c", "import sys, pipeline.run, pipeline.config; "
         "print(any(m in sys.modules for m in ('torch', 'vllm', 'transformers', 'polars')))"],
        cwd=PROJECT, capture_output=True, text=True, timeout=60)
    assert probe.stdout.strip() == "False"
    assert time.perf_counter() - began < 60


def test_every_command_shares_one_default_per_engine_and_work_option():
    import dataclasses

    from pipeline.config import EngineOptions, WorkOptions
    from pipeline.evaluation.config import CompareConfig, EvaluateConfig

    shared = [f.name for group in (EngineOptions, WorkOptions) for f in dataclasses.fields(group)]
    run, evaluate, compare = RunConfig(), EvaluateConfig(), CompareConfig()
    for name in shared:
        assert getattr(run, name) == getattr(evaluate, name) == getattr(compare, name), name
    # ... and the same check of a bad value, whichever command gets it
    for cls in (RunConfig, EvaluateConfig, CompareConfig):
        with pytest.raises(UsageError, match="--max-model-len 8: must be larger than --max-tokens 16"):
            cls(max_tokens=16, max_model_len=8)


def test_help_lists_the_options_by_group():
    from pipeline.config import build_parser

    text = build_parser(RunConfig, "curate", prog="python -m pipeline.run").format_help()
    titles = ["What to curate", "The model and the engine", "How answers and paraphrases",
              "Scale-out", "An OpenAI-compatible", "The LLM judge", "Where work is kept"]
    positions = [text.index(title) for title in titles]
    assert positions == sorted(positions)
    assert positions[1] < text.index("\n  --max-tokens") < positions[2] < text.index("\n  --replicas")
    assert positions[2] < text.index("\n  --loop-guard, --no-loop-guard") < positions[3]


def test_a_positional_field_of_the_tasks_command():
    from pipeline.config import parse_config
    from pipeline.tasks.cli import TasksConfig

    args = parse_config(TasksConfig, ["check", "mbpp", "--limit", "3"], "tasks")
    assert (args.command, args.task, args.limit, args.split) == ("check", "mbpp", 3, "train")
    assert parse_config(TasksConfig, ["list"], "tasks").task is None
    with pytest.raises(UsageError, match="show needs a task"):
        parse_config(TasksConfig, ["show"], "tasks")
    with pytest.raises(SystemExit):  # argparse: not one of list, show, check
        parse_config(TasksConfig, ["remove", "mbpp"], "tasks")
