"""In-process engine vs. ``--engine ray`` on a local Ray cluster of 1 and 2 worker nodes.

Same GSM8K prompts, same sampling, one process. For each setting: wall time of one generation
pass including engine start-up, and generation tok/s. A Ray job starts its engine replicas
itself, so its start-up is estimated by a job of one short prompt per replica, and its
"generation" time is the full job minus that. On this 2-core machine every node shares the same
two cores, so Ray can only add overhead here; the point is to measure that overhead.

    python benchmarks/ray_scaling.py --rows 256 --nodes 1,2
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=256)
    parser.add_argument("--max-tokens", type=int, default=384)
    parser.add_argument("--nodes", default="1,2", help="comma-separated worker-node counts")
    parser.add_argument("--kv-cache-gib", type=int, default=1)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

    from ray.cluster_utils import Cluster

    from pipeline.backends import device
    from pipeline.backends.base import SamplingSettings
    from pipeline.backends.model import DEFAULT_MODEL, cache_dir, resolve_model
    from pipeline.backends.ray_backend import RayBackend
    from pipeline.backends.vllm_backend import VllmBackend
    from pipeline.stages.load import load_rows
    from pipeline.tasks import load_task

    task = load_task("gsm8k")
    frame, _ = load_rows(task, None, limit=args.rows)
    conversations = [task.answer_prompt.messages(**row) for row in frame.to_dicts()]
    model = resolve_model(DEFAULT_MODEL)
    sampling = SamplingSettings(max_tokens=args.max_tokens)
    figures: dict[str, dict] = {}

    def report(name: str, wall: float, startup: float, tokens: int) -> None:
        figures[name] = {"wall_s": wall, "startup_s": startup, "tokens": tokens,
                         "generation_tok_per_s": tokens / (wall - startup)}
        print(f"{name}: wall {wall:.1f}s (start-up {startup:.1f}s), {tokens} tokens, "
              f"{tokens / (wall - startup):.1f} tok/s generating", flush=True)

    local = VllmBackend(model.path, model.spec, cache_root=cache_dir(), kv_cache_gib=args.kv_cache_gib)
    began = time.perf_counter()
    local.start()
    startup = time.perf_counter() - began
    generations = local.generate(conversations, sampling)
    report("in-process", time.perf_counter() - began, startup,
           sum(g.completion_tokens for g in generations))
    local.close()

    kwargs = device.engine_kwargs(model.path, dtype="auto", max_model_len=2048, seed=0,
                                  gpu_memory_utilization=0.9)
    for nodes in [int(n) for n in args.nodes.split(",")]:
        cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
        try:
            for _ in range(nodes):
                cluster.add_node(num_cpus=2)
            cluster.wait_for_nodes()
            backend = RayBackend(model.path, model.spec, engine_kwargs=kwargs, address=cluster.address,
                                 replicas=nodes, kv_cache_gib=args.kv_cache_gib, cache_root=cache_dir())
            began = time.perf_counter()
            backend.generate(conversations[:nodes], SamplingSettings(max_tokens=1))
            startup = time.perf_counter() - began
            began = time.perf_counter()
            generations = backend.generate(conversations, sampling)
            wall = time.perf_counter() - began
            report(f"ray-{nodes}-node", wall, min(startup, wall * 0.99),
                   sum(g.completion_tokens for g in generations))
            backend.close()
        finally:
            cluster.shutdown()
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
