"""From labels to figures: the targets' precision per deciding rule (a stratum) and per source,
with 95 % Wilson intervals, the number of targets in the whole dataset that are likely not
right, and two auditors' agreement.

A row's label is its latest one, whoever gave it. Precision is the share labelled ``right``
(``partial`` counts against it). Within a stratum the labelled rows are a random draw, so its
rate is the plain share; a source's (or all non-gold targets') rate weighs each labelled
stratum by its size in the dataset, as the sample over-draws rare strata on purpose; its
interval is Wilson's at the weighted rate and the labelled count. The estimated number of
targets not right is each labelled stratum's rate of ``partial`` + ``wrong`` times its size;
strata without a label are counted apart (``unlabelled_rows``), never guessed. Texts an LLM
judge ruled on (:data:`pipeline.auditing.sample.JUDGED`) are not targets: their labels give
the judge's true-positive and true-negative rates against people instead.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from pipeline.auditing.labels import LABELS
from pipeline.auditing.sample import JUDGED, LLM_RULE_PREFIX, AuditRow
from pipeline.stats import wilson_interval

SOURCES = ("model", "paraphrase", "gold")


def latest_by_id(current: dict[tuple[str, str], dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each row's most recent label over all auditors."""
    out: dict[str, dict[str, Any]] = {}
    for record in sorted(current.values(), key=lambda r: str(r.get("time", ""))):
        out[record["id"]] = record
    return out


def _counts(labels: list[str]) -> dict[str, int]:
    tally = Counter(labels)
    return {label: tally[label] for label in LABELS}


def _group(strata: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Size-weighted precision over labelled strata."""
    rows = sum(s["rows"] for s in strata.values())
    labelled = {k: s for k, s in strata.items() if s["labelled"]}
    n = sum(s["labelled"] for s in labelled.values())
    out: dict[str, Any] = {"rows": rows, "labelled": n,
                           **{label: sum(s[label] for s in strata.values()) for label in LABELS},
                           "precision": None, "ci95": None}
    if n:
        weight = sum(s["rows"] for s in labelled.values())
        precision = sum(s["rows"] * s["precision"] for s in labelled.values()) / weight
        out["precision"] = precision
        out["ci95"] = list(wilson_interval(precision * n, n))
    return out


def kappa(first: list[str], second: list[str]) -> float:
    """Cohen's kappa of two auditors' labels on the same rows."""
    n = len(first)
    observed = sum(a == b for a, b in zip(first, second, strict=True)) / n
    ca, cb = Counter(first), Counter(second)
    expected = sum(ca[label] * cb[label] for label in LABELS) / (n * n)
    return 1.0 if expected == 1 else (observed - expected) / (1 - expected)


def agreement(current: dict[tuple[str, str], dict[str, Any]]) -> dict[str, Any] | None:
    """Kappa of the two auditors who labelled the most rows in common (None: fewer than two)."""
    by_auditor: dict[str, dict[str, str]] = {}
    for (row_id, auditor), record in current.items():
        by_auditor.setdefault(auditor, {})[row_id] = record["label"]
    pairs = [(len(set(by_auditor[a]) & set(by_auditor[b])), a, b)
             for a in sorted(by_auditor) for b in sorted(by_auditor) if a < b]
    shared, a, b = max(pairs, default=(0, "", ""))
    if not shared:
        return None
    ids = sorted(set(by_auditor[a]) & set(by_auditor[b]))
    first, second = [by_auditor[a][i] for i in ids], [by_auditor[b][i] for i in ids]
    agreed = sum(x == y for x, y in zip(first, second, strict=True))
    return {"auditors": [a, b], "rows": shared, "agreed": agreed, "kappa": kappa(first, second)}


def judge_against_people(rows: list[AuditRow], labels: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
    """The LLM judge's verdicts on the texts people labelled: a 2x2 table and its rates (a
    text is right for people only when labelled ``right``)."""
    pairs = [(row.rule == f"{LLM_RULE_PREFIX}correct", labels[row.id]["label"] == "right")
             for row in rows if row.source == JUDGED and row.id in labels]
    if not pairs:
        return None
    table = {"judge_right_people_right": sum(j and p for j, p in pairs),
             "judge_right_people_not": sum(j and not p for j, p in pairs),
             "judge_wrong_people_right": sum(p and not j for j, p in pairs),
             "judge_wrong_people_not": sum(not j and not p for j, p in pairs)}
    right = table["judge_right_people_right"] + table["judge_wrong_people_right"]
    not_right = len(pairs) - right
    return {"labelled": len(pairs), **table,
            "true_positive_rate": table["judge_right_people_right"] / right if right else None,
            "true_negative_rate": table["judge_wrong_people_not"] / not_right if not_right else None}


def estimate(rows: list[AuditRow], sample_ids: list[str],
             current: dict[tuple[str, str], dict[str, Any]]) -> dict[str, Any]:
    """The ``audit`` section of ``summary.json``."""
    labels = latest_by_id(current)
    judged = judge_against_people(rows, labels)
    rows = [row for row in rows if row.source != JUDGED]  # the rest is about targets
    sizes = Counter(r.stratum for r in rows)
    labelled: dict[str, list[str]] = {}
    source_of: dict[str, str] = {}
    for row in rows:
        source_of[row.stratum] = row.source
        if row.id in labels:
            labelled.setdefault(row.stratum, []).append(labels[row.id]["label"])
    by_rule: dict[str, dict[str, Any]] = {}
    for stratum in sorted(sizes, key=lambda s: (SOURCES.index(source_of[s]) if source_of[s] in SOURCES
                                                 else 9, s)):
        given = labelled.get(stratum, [])
        counts = _counts(given)
        entry = {"source": source_of[stratum], "rows": sizes[stratum], "labelled": len(given), **counts,
                 "precision": counts["right"] / len(given) if given else None,
                 "ci95": list(wilson_interval(counts["right"], len(given))) if given else None}
        by_rule[stratum] = entry
    by_source = {source: _group({k: v for k, v in by_rule.items() if v["source"] == source})
                 for source in SOURCES if any(v["source"] == source for v in by_rule.values())}
    not_right = {source: round(sum(v["rows"] * (1 - v["precision"]) for v in by_rule.values()
                                   if v["source"] == source and v["labelled"]), 1)
                 for source in by_source}
    sample = set(sample_ids)
    unlabelled = sum(v["rows"] for v in by_rule.values() if not v["labelled"])
    return {
        "sample_size": len(sample_ids), "labelled": len(labels),
        "labelled_in_sample": sum(i in sample for i in labels),
        "auditors": sorted({auditor for _, auditor in current}),
        "by_source": by_source,
        "non_gold": _group({k: v for k, v in by_rule.items() if v["source"] != "gold"}),
        "all": _group(by_rule),
        "by_rule": by_rule,
        "estimated_not_right": {**not_right, "total": round(sum(not_right.values()), 1),
                                "unlabelled_rows": unlabelled},
        "agreement": agreement(current),
        "judge_vs_people": judged,
    }
