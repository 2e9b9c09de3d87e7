"""The audit sample: rows of ``train.parquet`` drawn at random within strata, so the rare
paths to a target (a judge rule that admitted three rows) are read too, not only the common ones.

A stratum is the row's source (model / paraphrase / gold) and what decided it: the judge rule
that proved a model answer or a paraphrase right, or ``gold``. Gold targets are the dataset's
own answers, not the pipeline's decisions, so they get at most :data:`GOLD_SHARE` of the
sample unless the other targets run out. Within the gold and the non-gold part, each stratum
gets at least :data:`MIN_PER_STRATUM` rows (all of a smaller one), the rest is shared in
proportion to the strata's sizes (largest remainders), and within a stratum rows are a seeded
random choice. When an LLM judge decided rows, up to :data:`JUDGED_SAMPLE` of the texts it ruled
on (right or wrong, targets or not) are added, so people's labels can be set against its
verdicts. The drawn ids are saved in ``<run>/audit/sample-<seed>-<size>.json`` with the
hash of the ``train.parquet`` they were drawn from: a rerun shows the same rows in the same
order; a changed dataset gets a sample of its own.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.errors import UsageError
from pipeline.storage import atomic_write_json

AUDIT_DIR = "audit"
MIN_PER_STRATUM = 3
#: The most of a sample that gold rows get while other targets are left to draw.
GOLD_SHARE = 0.25
#: An LLM judge's verdicts (judges/nq.py: ``llm:correct``, ``llm:incorrect``).
LLM_RULE_PREFIX = "llm:"
#: Texts an LLM judge ruled on, shown besides the targets: ``<id>#judged-candidate``.
JUDGED, JUDGED_MARK = "judged", "#judged-"
#: How many of them a sample adds (each verdict at least MIN_PER_STRATUM, the rest by size).
JUDGED_SAMPLE = 20


class AuditError(UsageError):
    """A run folder, sample or label file the audit cannot use; the message says which and why."""


@dataclass(frozen=True)
class AuditRow:
    """What the page shows of one training row (all of it untrusted text)."""

    id: str
    source: str
    rule: str  # what decided the target: the judge rule, or "gold"
    question: str
    gold: str
    target: str
    reason: str  # the judge's reason for the verdict that admitted the target

    @property
    def stratum(self) -> str:
        return f"{self.source} · {self.rule}"

    @property
    def target_sha(self) -> str:
        """Labels carry it: a label given to another text of the same id does not count."""
        return hashlib.sha256(self.target.encode()).hexdigest()[:16]


def _question(prompt: Any) -> str:
    users = [m["content"] for m in prompt or [] if m.get("role") == "user"]
    return users[-1] if users else ""


def read_rows(run_dir: Path) -> list[AuditRow]:
    """Every row of ``<run>/train.parquet`` as an :class:`AuditRow`."""
    import polars as pl

    path = run_dir / "train.parquet"
    if not path.is_file():
        raise AuditError(f"{run_dir}: no train.parquet here; audit a finished run folder (the --out "
                         f"of `s3ft run`)")
    frame = pl.read_parquet(path)
    needed = {"id", "source", "target", "gold", "prompt", "judge_rule", "paraphrase_judge_rule"}
    if missing := sorted(needed - set(frame.columns)):
        raise AuditError(f"{path}: columns {missing} missing; is this a train.parquet written by s3ft?")
    rows = []
    for r in frame.iter_rows(named=True):
        source = r["source"]
        rule, reason = {"model": (r["judge_rule"], r.get("judge_reason")),
                        "paraphrase": (r["paraphrase_judge_rule"], r.get("paraphrase_judge_reason"))
                        }.get(source, ("gold", "the dataset's own answer"))
        rows.append(AuditRow(id=str(r["id"]), source=source, rule=rule or "unknown",
                             question=_question(r["prompt"]), gold=r["gold"] or "",
                             target=r["target"] or "", reason=reason or ""))
        # What an LLM judge ruled on, right or wrong: people's labels of these texts measure it.
        for prefix, text_column in (("", "candidate"), ("paraphrase_", "paraphrase")):
            verdict_rule = r.get(f"{prefix}judge_rule") or ""
            if verdict_rule.startswith(LLM_RULE_PREFIX) and r.get(text_column):
                rows.append(AuditRow(id=f"{r['id']}{JUDGED_MARK}{text_column}", source=JUDGED,
                                     rule=verdict_rule, question=_question(r["prompt"]),
                                     gold=r["gold"] or "", target=r[text_column],
                                     reason=r.get(f"{prefix}judge_reason") or ""))
    return rows


def allocate(sizes: dict[str, int], total: int) -> dict[str, int]:
    """Rows to draw per stratum: the minimum each, the rest in proportion to size."""
    total = min(total, sum(sizes.values()))
    floor = {s: min(n, MIN_PER_STRATUM) for s, n in sizes.items()}
    if sum(floor.values()) >= total:  # a small sample: the minimum for the largest strata first
        out, left = dict.fromkeys(sizes, 0), total
        for stratum in sorted(sizes, key=lambda s: (-sizes[s], s)):
            out[stratum] = min(floor[stratum], left)
            left -= out[stratum]
        return out
    spare = {s: sizes[s] - floor[s] for s in sizes}
    rest = total - sum(floor.values())
    shares = {s: rest * spare[s] / sum(spare.values()) for s in sizes}
    out = {s: floor[s] + int(shares[s]) for s in sizes}
    for stratum in sorted(sizes, key=lambda s: (-(shares[s] - int(shares[s])), s)):
        if sum(out.values()) >= total:
            break
        if out[stratum] < sizes[stratum]:
            out[stratum] += 1
    return out


def split_gold(sizes: dict[str, int], size: int) -> dict[str, int]:
    """:func:`allocate` within the gold strata and within the rest, gold held to its share."""
    gold = {s: n for s, n in sizes.items() if s.startswith("gold ")}
    other = {s: n for s, n in sizes.items() if s not in gold}
    size = min(size, sum(sizes.values()))
    quota = min(sum(gold.values()), max(min(MIN_PER_STRATUM, size), round(size * GOLD_SHARE)))
    quota = max(quota, size - sum(other.values()))  # the other targets ran out: fill with gold
    return {**allocate(other, size - quota), **allocate(gold, quota)}


def draw(rows: list[AuditRow], size: int, seed: int) -> list[str]:
    """The sample's ids, in the order the page shows them (shuffled across strata): ``size``
    targets, plus the texts an LLM judge ruled on (:data:`JUDGED_SAMPLE`)."""
    rng = random.Random(seed)
    by_stratum: dict[str, list[str]] = {}
    for row in sorted(rows, key=lambda r: r.id):
        by_stratum.setdefault(row.stratum, []).append(row.id)
    sizes = {s: len(ids) for s, ids in by_stratum.items()}
    judged = {s: n for s, n in sizes.items() if s.startswith(JUDGED + " ")}
    counts = {**split_gold({s: n for s, n in sizes.items() if s not in judged}, size),
              **allocate(judged, JUDGED_SAMPLE)}
    picked = [i for s in sorted(by_stratum) for i in rng.sample(by_stratum[s], counts[s])]
    rng.shuffle(picked)
    return picked


@dataclass(frozen=True)
class Sample:
    seed: int
    ids: list[str]
    path: Path


def train_sha(run_dir: Path) -> str:
    return hashlib.sha256((run_dir / "train.parquet").read_bytes()).hexdigest()[:12]


def load_or_draw(run_dir: Path, rows: list[AuditRow], size: int, seed: int) -> Sample:
    """The sample for (dataset, seed, size): read when it was drawn before, else drawn and saved."""
    if size < 1:
        raise AuditError(f"--sample {size}: draw at least 1 row")
    sha = train_sha(run_dir)
    path = run_dir / AUDIT_DIR / f"sample-{sha}-seed{seed}-n{size}.json"
    if path.is_file():
        return Sample(seed, json.loads(path.read_text())["ids"], path)
    ids = draw(rows, size, seed)
    strata = Counter(r.stratum for r in rows)
    drawn = Counter(r.stratum for r in rows if r.id in set(ids))
    atomic_write_json(path, {"train_sha256": sha, "seed": seed, "size": size, "ids": ids,
                             "strata": {s: {"rows": strata[s], "drawn": drawn[s]} for s in sorted(strata)}})
    return Sample(seed, ids, path)
