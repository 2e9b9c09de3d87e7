"""The memory sampler of benchmarks/scale_run.py, on real processes: it must see the children
(vLLM's engine and worker are children of the CLI) and tell shared pages from private ones."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import psutil

PROJECT = Path(__file__).resolve().parents[1]
MIB = 2**20


def load_scale_run():
    spec = importlib.util.spec_from_file_location("scale_run", PROJECT / "benchmarks" / "scale_run.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_tree_memory_counts_a_child_and_its_private_pages():
    scale_run = load_scale_run()
    # A child that touches 300 MiB of private memory, then waits to be measured.
    child = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time; b = bytearray(300 * 2**20); b[::4096] = b'x' * len(b[::4096]); "
         "print('ready', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "ready"
        sizes = scale_run.tree_memory(psutil.Process())
        mine = [name for name in sizes if name.startswith(f"{child.pid} ")]
        assert mine, f"child {child.pid} missing from {sorted(sizes)}"
        rss, pss = sizes[mine[0]]
        assert rss >= 300 * MIB
        # Private pages count fully in PSS; shared library pages only in part.
        assert 300 * MIB <= pss <= rss
    finally:
        child.kill()
        child.wait()
    assert not any(name.startswith(f"{child.pid} ") for name in scale_run.tree_memory(psutil.Process()))
