"""One audit of one run folder: its rows, its sample, its labels, and where the figures go.

Every label given is appended to ``audit/labels.jsonl`` first, then the ``audit`` section of
``summary.json`` is rewritten; :meth:`AuditSession.publish` also re-renders ``report.html``
(the dataset card reads ``summary.json`` on the next ``s3ft push``).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from pipeline.auditing import labels as label_store
from pipeline.auditing.estimate import estimate
from pipeline.auditing.sample import AuditError, AuditRow, load_or_draw, read_rows
from pipeline.storage import atomic_write_json

log = logging.getLogger(__name__)


class AuditSession:
    def __init__(self, run_dir: Path | str, size: int = 60, seed: int = 1, auditor: str = "me"):
        self.run_dir = Path(run_dir)
        self.rows = read_rows(self.run_dir)
        self.by_id = {row.id: row for row in self.rows}
        self.sample = load_or_draw(self.run_dir, self.rows, size, seed)
        self.auditor = auditor

    # -- labels ------------------------------------------------------------------------------

    def current(self) -> dict[tuple[str, str], dict[str, Any]]:
        return label_store.current(label_store.read_labels(self.run_dir), self.by_id)

    def add_label(self, row_id: str, label: str, note: str = "") -> dict[str, Any]:
        row = self.by_id.get(row_id)
        if row is None or row_id not in self.sample.ids:
            raise AuditError(f"row {row_id!r} is not in this audit's sample")
        label_store.append(self.run_dir, [label_store.make_label(row, label, note, self.auditor)])
        return self.write_summary()

    def import_file(self, path: Path) -> int:
        """Append the file's labels (the caller publishes the figures once, after)."""
        return label_store.import_labels(self.run_dir, path, self.by_id, self.auditor)

    def export_file(self, path: Path) -> int:
        return label_store.export_labels(self.run_dir, path, self.by_id)

    # -- figures -----------------------------------------------------------------------------

    def figures(self, current: dict[tuple[str, str], dict[str, Any]] | None = None) -> dict[str, Any]:
        current = self.current() if current is None else current
        return {**estimate(self.rows, self.sample.ids, current), "seed": self.sample.seed,
                "sample_file": str(self.sample.path.relative_to(self.run_dir))}

    def write_summary(self) -> dict[str, Any]:
        """Rewrite summary.json's ``audit`` section; return it."""
        path = self.run_dir / "summary.json"
        summary = json.loads(path.read_text()) if path.is_file() else {}
        summary["audit"] = self.figures()
        atomic_write_json(path, summary)
        return summary["audit"]

    def publish(self) -> dict[str, Any]:
        """summary.json and report.html (the card follows on the next push)."""
        from pipeline.reporting.report import write_report

        figures = self.write_summary()
        try:
            write_report(self.run_dir)
        except Exception as exc:  # the labels and summary are saved; a report is only a view
            log.warning("report.html not re-rendered (%s); the labels and summary.json are saved", exc)
        return figures

    def state(self) -> dict[str, Any]:
        """What the page loads: the sample with this auditor's labels, and the figures (one
        read of the label file)."""
        current = self.current()
        return {"rows": self.page_rows(current), "figures": self.figures(current)}

    def page_rows(self, current: dict[tuple[str, str], dict[str, Any]] | None = None) -> list[dict[str, Any]]:
        """The sample as the page shows it, each row with this auditor's label and note."""
        current = self.current() if current is None else current
        mine = {row_id: r for (row_id, auditor), r in current.items() if auditor == self.auditor}

        def entry(row: AuditRow) -> dict[str, Any]:
            given = mine.get(row.id, {})
            return {"id": row.id, "source": row.source, "rule": row.rule, "question": row.question,
                    "gold": row.gold, "target": row.target, "reason": row.reason,
                    "label": given.get("label"), "note": given.get("note", "")}

        return [entry(self.by_id[i]) for i in self.sample.ids if i in self.by_id]
