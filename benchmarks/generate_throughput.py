"""Generated tokens/s: raw ``vllm.LLM.generate`` vs. the pipeline's generate stage.

Both run on the same engine instance, the same GSM8K prompts and the same sampling settings,
in one process, so the ratio is not skewed by machine noise between runs. The pipeline is
measured through ``run_stage`` (tokenisation, Parquet writes and markers included), once per
``--shard-sizes`` value, which also shows what sharding costs next to one big batch.

    python benchmarks/generate_throughput.py --rows 256 --shard-sizes 256,64 --rounds 2
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=256)
    parser.add_argument("--max-tokens", type=int, default=384)
    parser.add_argument("--shard-sizes", default="256", help="comma-separated")
    parser.add_argument("--model", default=None)
    parser.add_argument("--rounds", type=int, default=2, help="raw/pipeline rounds, order alternating")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()

    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    from pipeline.backends.base import SamplingSettings
    from pipeline.backends.model import DEFAULT_MODEL, cache_dir, resolve_model
    from pipeline.backends.vllm_backend import VllmBackend
    from pipeline.config import RunConfig
    from pipeline.stage import run_stage
    from pipeline.stages.generate import GenerateStage
    from pipeline.stages.load import load_rows, write_shards
    from pipeline.tasks import load_task

    task = load_task("gsm8k")
    frame, _ = load_rows(task, None, limit=args.rows)
    model = resolve_model(args.model or DEFAULT_MODEL)
    backend = VllmBackend(model.path, model.spec, cache_root=cache_dir(),
                          kv_cache_gib=RunConfig.kv_cache_gib)
    sampling = SamplingSettings(max_tokens=args.max_tokens)
    began = time.perf_counter()
    backend.start()
    startup = time.perf_counter() - began

    # Raw engine: the same chat-templated token ids the pipeline sends.
    prompts = [TokensPrompt(prompt_token_ids=backend.encode(task.answer_prompt.messages(**row)))
               for row in frame.to_dicts()]
    params = SamplingParams(temperature=0.0, max_tokens=args.max_tokens)
    backend.engine.generate(prompts[:4], params, use_tqdm=False)  # warm-up, not timed
    print(f"engine start-up {startup:.1f}s", flush=True)
    stage = GenerateStage(task, backend, sampling, model.fingerprint, engine_settings={})

    def raw_pass() -> tuple[float, int]:
        began = time.perf_counter()
        outputs = backend.engine.generate(prompts, params, use_tqdm=False)
        return time.perf_counter() - began, sum(len(o.outputs[0].token_ids) for o in outputs)

    def pipeline_pass(shard_size: int) -> tuple[float, int]:
        with tempfile.TemporaryDirectory() as tmp:
            shards = write_shards(frame, Path(tmp), "bench", shard_size)
            began = time.perf_counter()
            result = run_stage(stage, shards, "bench", Path(tmp))
            return time.perf_counter() - began, int(result.stats["generate_completion_tokens"])

    figures: dict = {"rows": args.rows, "max_tokens": args.max_tokens, "engine_startup_s": startup,
                     "rounds": []}
    shard_sizes = [int(s) for s in args.shard_sizes.split(",")]
    for round_index in range(args.rounds):
        # Alternate the order, so a machine that speeds up or slows down favours neither side.
        passes = ["raw", *shard_sizes]
        if round_index % 2:
            passes.reverse()
        measured: dict = {}
        for which in passes:
            # Every pass starts from an empty prefix cache: otherwise a later pass reuses the
            # prompts' KV blocks from an earlier one and looks faster than it is.
            backend.engine.reset_prefix_cache()
            seconds, tokens = raw_pass() if which == "raw" else pipeline_pass(which)
            measured[str(which)] = {"seconds": seconds, "tokens": tokens, "tok_per_s": tokens / seconds}
        raw_rate = measured["raw"]["tok_per_s"]
        print(f"round {round_index + 1}: raw vllm.LLM.generate {measured['raw']['tokens']} tokens in "
              f"{measured['raw']['seconds']:.1f}s = {raw_rate:.1f} tok/s", flush=True)
        for size in shard_sizes:
            entry = measured[str(size)]
            entry["ratio"] = entry["tok_per_s"] / raw_rate
            print(f"  pipeline generate stage, shard size {size}: {entry['tokens']} tokens in "
                  f"{entry['seconds']:.1f}s = {entry['tok_per_s']:.1f} tok/s; ratio to raw "
                  f"{entry['ratio']:.3f}", flush=True)
        figures["rounds"].append(measured)
    for size in shard_sizes:
        ratios = [r[str(size)]["ratio"] for r in figures["rounds"]]
        figures[f"median_ratio_shard_{size}"] = statistics.median(ratios)
        print(f"shard size {size}: median ratio to raw over {len(ratios)} rounds "
              f"{statistics.median(ratios):.3f} (each: {', '.join(f'{r:.3f}' for r in ratios)})")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    os.environ.setdefault("S3FT_DATA_DIR", str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    main()
