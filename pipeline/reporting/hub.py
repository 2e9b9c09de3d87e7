"""Sharing a finished run on the Hub: the folder to upload (card, data, config, summary)
and the upload itself (``HfApi.upload_folder``). The command line is ``python -m
pipeline.push`` (:mod:`pipeline.push`)."""

from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path

from pipeline.errors import RunFailed, UsageError
from pipeline.reporting.card import DATA_FILE, RunFiles, read_run, render_card

PUSHED_FILES = (DATA_FILE, "README.md", "config.yaml", "run.json", "summary.json")
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*$")


def prepare_folder(run: RunFiles, repo_id: str, folder: Path) -> Path:
    """Write the files to upload into ``folder`` (new, empty, or an earlier dry run of ours)."""
    folder.mkdir(parents=True, exist_ok=True)
    stray = sorted(str(p.relative_to(folder)) for p in folder.rglob("*")
                   if p.is_file() and str(p.relative_to(folder)) not in PUSHED_FILES)
    if stray:
        raise UsageError(f"--dry-run {folder}: the folder holds other files ({', '.join(stray[:5])}); "
                         f"pass a new or empty folder so it shows exactly what would be pushed")
    (folder / DATA_FILE).parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(run.run_dir / "train.parquet", folder / DATA_FILE)
    (folder / "README.md").write_text(render_card(run, repo_id))
    for name in ("config.yaml", "run.json", "summary.json"):
        shutil.copyfile(run.run_dir / name, folder / name)
    return folder


def push_run(run_dir: Path | str, repo_id: str, private: bool = False,
             dry_run_dir: Path | str | None = None) -> Path | str:
    """Upload the run at ``run_dir`` as the dataset ``repo_id``; returns the repo URL.

    With ``dry_run_dir`` nothing is sent: the folder that would be uploaded is written there
    and its path returned.
    """
    if not _REPO_ID.match(repo_id):
        raise UsageError(f"--repo-id {repo_id!r}: expected <user or org>/<name>, e.g. alice/s3ft-gsm8k")
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:  # the Hub's own rule ("a/b..c" passed the shape check, then the Hub refused it)
        validate_repo_id(repo_id)
    except HFValidationError as exc:
        raise UsageError(f"--repo-id {repo_id!r}: the Hub refuses it ({exc})") from None
    run = read_run(run_dir)
    if dry_run_dir is not None:
        return prepare_folder(run, repo_id, Path(dry_run_dir))

    from huggingface_hub import HfApi, constants, get_token
    from huggingface_hub.errors import HfHubHTTPError

    if constants.HF_HUB_OFFLINE:
        raise UsageError("HF_HUB_OFFLINE is set: unset it to push, or use --dry-run DIR")
    if not get_token():
        raise UsageError("no Hugging Face token: set HF_TOKEN or run `hf auth login` (a token with "
                         "write access)")
    api = HfApi()
    with tempfile.TemporaryDirectory(prefix="s3ft-push-") as staging:
        folder = prepare_folder(run, repo_id, Path(staging))
        try:
            url = api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
            api.upload_folder(
                repo_id=repo_id, repo_type="dataset", folder_path=folder,
                commit_message=f"S3FT {run.task} training set: {run.table.num_rows} rows "
                               f"({run.run_dir.name})",
            )
        except (HfHubHTTPError, ValueError) as exc:  # ValueError: the Hub rejected the card's metadata
            raise RunFailed(f"push of {run.run_dir} to {repo_id} failed: {exc}") from None
    return str(url)
