"""``s3ft audit runs/<run>``: label a random sample of a curated dataset's targets in the browser
and get their precision, with 95 % intervals, in summary.json, report.html and the dataset card.

    s3ft audit runs/nq-1a2b3c                        # a page on 127.0.0.1 with 60 rows
    s3ft audit runs/nq-1a2b3c --sample 120 --seed 1 --no-browser --port 8765
    s3ft audit runs/nq-1a2b3c --import labels.jsonl  # labels made elsewhere
    s3ft audit runs/nq-1a2b3c --export labels.jsonl

The sample, the labels and what they mean: docs/audit.md.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.config import Options, need
from pipeline.errors import UsageError


@dataclass
class AuditConfig(Options):
    """What to audit, and how the page is served."""

    run: str | None = field(default=None, metadata={
        "positional": True, "help": "A finished run folder (the --out of `s3ft run`)."})
    sample: int = field(default=60, metadata={
        "help": "Rows to label, drawn at random within each source and deciding rule."})
    seed: int = field(default=1, metadata={
        "help": "The sample's seed: the same seed shows the same rows, and labelling resumes."})
    auditor: str = field(default="me", metadata={"help": "Your name in the label file."})
    host: str = field(default="127.0.0.1", metadata={
        "help": "Where the page listens. Only this machine can reach 127.0.0.1; another address "
                "shows the rows to your network."})
    port: int = field(default=8765, metadata={"help": "The page's port."})
    browser: bool = field(default=True, metadata={
        "help": "Open the page in a browser (--no-browser: print its address only)."})
    import_labels: str | None = field(default=None, metadata={
        "flag": "--import", "metavar": "FILE",
        "help": "Add the labels of this JSONL file (id, label; note, auditor, time optional), "
                "update the figures, and stop."})
    export_labels: str | None = field(default=None, metadata={
        "flag": "--export", "metavar": "FILE",
        "help": "Write the labels that count to this JSONL file, and stop."})
    config: str | None = field(default=None, metadata={"help": "YAML file with any of these options."})

    def check(self) -> None:
        if not self.run:
            raise UsageError("name the run folder to audit: s3ft audit runs/<run>")
        need(self, self.sample >= 1, "sample", "draw at least 1 row")
        need(self, 0 < self.port < 65536, "port", "use a port number from 1 to 65535")


def main(argv: list[str] | None = None) -> int:
    from pipeline.config import parse_config

    settings = parse_config(AuditConfig, argv, description=__doc__.splitlines()[0], prog="s3ft audit")
    from pipeline.auditing.session import AuditSession

    session = AuditSession(Path(settings.run), settings.sample, settings.seed, settings.auditor)
    if settings.import_labels or settings.export_labels:
        if settings.import_labels:
            added = session.import_file(Path(settings.import_labels))
            print(f"imported {added} labels into {session.run_dir / 'audit' / 'labels.jsonl'}")
        if settings.export_labels:
            kept = session.export_file(Path(settings.export_labels))
            print(f"exported {kept} labels to {settings.export_labels}")
        print(summary_line(session.publish()))
        return 0
    from pipeline.auditing.server import serve

    serve(session, settings.host, settings.port, settings.browser)
    print(summary_line(session.figures()))
    return 0


def summary_line(figures: dict) -> str:
    g = figures["non_gold"]
    if not g["labelled"]:
        return "no non-gold target labelled yet"
    low, high = g["ci95"]
    return (f"non-gold targets right: {100 * g['precision']:.1f} % [{100 * low:.1f}, {100 * high:.1f}] "
            f"({g['labelled']} labelled of {g['rows']}); estimated not right in the dataset: "
            f"{figures['estimated_not_right']['total']:g} targets")


if __name__ == "__main__":
    from pipeline.errors import report_errors

    sys.exit(report_errors(main))
