"""Run an untrusted Python program in a contained child process (standard library only).

Model-written code is hostile until proven otherwise: it may loop, fork-bomb, allocate all
memory, fill the disk, open sockets, read secrets, delete files or kill its parent. The judge
must survive all of that and still give an honest verdict, so containment is done by the
kernel, never by Python-level tricks:

* every program runs in its own process tree, never in the judge's process;
* with root (or unprivileged user namespaces) the tree lives in fresh PID, mount, network,
  IPC and UTS namespaces: killing the namespace's init kills every process in it (even
  ones that called ``setsid`` or double-forked), only a down loopback device exists, and
  the root filesystem is a small read-only jail (the Python install, ``/usr``, a few device
  nodes) plus a size-limited tmpfs at ``/tmp`` (the working directory and ``$HOME``) that
  disappears with the namespace;
* as root the program also runs under its own throw-away uid (so ``RLIMIT_NPROC`` is
  enforced and it owns no file outside its tmpfs); in a user namespace it loses all
  capabilities instead;
* resource limits (address space, CPU seconds, file size, open files, processes, no core
  dumps) are set with ``setrlimit`` in the program's process; the environment is replaced;
* a wall-clock timeout kills the whole tree; output is read incrementally and capped.

Process layout: the judge talks to one *spawner* (``sys.executable -I -S -B``, started
once, single-threaded, never runs untrusted code) which forks a disposable *wrapper* (A)
per run. A builds the sandbox and forks the namespace's init (B) and the program (C). C is
A's child, A is the spawner's child: whatever C kills, it cannot reach the judge, and A
dying takes B (PR_SET_PDEATHSIG) and with it the whole namespace down. Forking the
pre-started spawner instead of starting an interpreter per program is what makes ~100
programs/s possible on 2 cores. When a mechanism is unavailable the module falls back to
weaker modes (see :func:`capabilities` and docs/sandbox.md) and logs a warning once.

Completion proof: the judge appends nothing to the program's source. Instead the in-child
harness compiles the tests up front, runs the program, runs each test, and only then reads a
per-run random nonce from a pipe and writes it, with the number of tests it ran, to a
dedicated status pipe. An early ``sys.exit``/``os._exit``/``atexit`` trick, a patched
``print`` or a fake line on stdout therefore cannot produce a pass: the nonce is not in the
program's text, argv, environment or any file.

Modules: this one is the API (modes, :func:`capabilities`, :func:`run_python`, and every
public name). :mod:`judges.sandbox_result` holds the result types and the parsing of the
harness's records, :mod:`judges.sandbox_run` one run's plumbing (config, pipes, deadline),
:mod:`judges.sandbox_spawner` the judge's handle on the spawner, and
``judges/sandbox_child.py`` the child program itself (text, never imported).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

from judges.sandbox_result import CONFLICT as CONFLICT  # re-exported: judges.value_tests
from judges.sandbox_result import Failure, SandboxError, SandboxResult, ValueProbe
from judges.sandbox_run import _run
from judges.sandbox_spawner import _spawner as _spawner  # re-exported: tests peek at its process

__all__ = [
    "Capabilities",
    "Failure",
    "MODES",
    "SandboxError",
    "SandboxResult",
    "ValueProbe",
    "capabilities",
    "run_python",
]

log = logging.getLogger(__name__)

#: Containment modes, strongest first. ``namespace``: root, PID+mount+net+IPC+UTS
#: namespaces, read-only jail, throw-away uid. ``userns``: the same inside an unprivileged
#: user namespace, capabilities dropped instead of a uid change. ``setuid``: no namespaces,
#: but a throw-away uid (its processes are swept with ``kill(-1)`` afterwards). ``pgroup``:
#: only a new session / process group, rlimits and a disposable parent.
MODES = ("namespace", "userns", "setuid", "pgroup")


@dataclass(frozen=True)
class Capabilities:
    """Which containment mechanisms work on this machine (detected once, then cached)."""

    mode: str
    pid_namespace: bool
    network_namespace: bool
    filesystem_jail: bool
    separate_uid: bool
    user_namespace: bool
    #: Why each stronger mode was rejected (mode -> error), for the warning and the docs.
    rejected: dict[str, str] = field(default_factory=dict)
    #: The syscall filter (keyring, shared memory, ...) is in force; False: degraded.
    seccomp: bool = True

    @property
    def full(self) -> bool:
        """True when every containment guarantee in docs/sandbox.md holds."""
        return self.mode in ("namespace", "userns")


def _capabilities_for(mode: str, rejected: dict[str, str] | None = None) -> Capabilities:
    namespaced = mode in ("namespace", "userns")
    return Capabilities(
        mode=mode,
        pid_namespace=namespaced,
        network_namespace=namespaced,
        filesystem_jail=namespaced,
        separate_uid=mode in ("namespace", "setuid"),
        user_namespace=mode == "userns",
        rejected=dict(rejected or {}),
    )


_caps: Capabilities | None = None
_caps_lock = threading.Lock()


def capabilities(refresh: bool = False) -> Capabilities:
    """Detect (once, then cached) the strongest containment mode that works here.

    Detection runs a trivial program in each mode, strongest first, because whether
    ``unshare``/``mount``/``setuid`` are allowed depends on the kernel, seccomp policy,
    container runtime and uid, and is only knowable by trying. ``S3FT_SANDBOX_MODE``
    forces one mode (used to test the fallbacks). Falling back below full containment
    logs a warning once.
    """
    global _caps
    with _caps_lock:
        if _caps is None or refresh:
            _caps = _detect()
        return _caps


def _detect() -> Capabilities:
    forced = os.environ.get("S3FT_SANDBOX_MODE")
    if forced:
        if forced not in MODES:
            raise SandboxError(f"S3FT_SANDBOX_MODE={forced!r}; expected one of {MODES}")
        order: tuple[str, ...] = (forced,)
    elif os.geteuid() == 0:
        order = MODES
    else:
        order = ("userns", "pgroup")
    rejected: dict[str, str] = {}
    for mode in order:
        problem = _probe(mode)
        if problem is None:
            caps = dataclasses.replace(_capabilities_for(mode, rejected),
                                       seccomp=_probe_seccomp.get(mode, False))
            if not caps.seccomp:
                log.warning("sandbox: the seccomp filter could not be installed (keyring and "
                            "shared-memory calls stay open to judged programs); see "
                            "docs/sandbox.md")
            if not caps.full:
                why = "; ".join(f"{m}: {e}" for m, e in rejected.items()) or "forced"
                log.warning("sandbox: running untrusted code in the weaker %r mode (%s); "
                            "see docs/sandbox.md", mode, why)
            return caps
        rejected[mode] = problem
    raise SandboxError(f"no sandbox mode works here: {rejected}")


_probe_seccomp: dict[str, bool] = {}


def _probe(mode: str) -> str | None:
    """Return None if ``mode`` runs a small program correctly, else what went wrong.
    (Whether the seccomp filter took is recorded in ``_probe_seccomp``.)

    The program imports a stdlib module not loaded at start-up, so a mode whose uid cannot
    read the Python installation (e.g. one under a private home directory) is rejected.
    """
    try:
        result = _run(
            "import colorsys\nx = 1", tests=["assert x == 1"], mode=mode, timeout_s=30.0,
            memory_mb=512, cpu_s=None, file_size_mb=1, max_processes=8, max_open_files=64,
            tmp_mb=1, max_output_bytes=4096,
        )
    except (SandboxError, OSError) as exc:
        return str(exc)[:300]
    if result.completed:
        _probe_seccomp[mode] = result.seccomp
        return None
    detail = result.failure or result.stderr[-300:]
    return f"probe did not complete (rc={result.returncode}: {detail})"


def run_python(
    source: str,
    *,
    tests: Sequence[str | ValueProbe] = (),
    timeout_s: float = 5.0,
    memory_mb: int = 512,
    cpu_s: float | None = None,
    file_size_mb: int = 16,
    max_processes: int = 8,
    max_open_files: int = 64,
    tmp_mb: int = 64,
    max_output_bytes: int = 64 * 1024,
    module_name: str = "__main__",
    mode: str | None = None,
) -> SandboxResult:
    """Run ``source``, then each statement in ``tests``, in a fresh contained process tree.

    A test is a statement the harness executes (``assert f(1) == 2``), or a
    :class:`ValueProbe` whose value is sent back (``SandboxResult.values``) for the caller
    to compare: then the expected value never enters the sandbox.

    ``timeout_s`` is wall-clock for the whole run; ``cpu_s`` (default: the timeout plus one
    second) backs it up with RLIMIT_CPU. ``memory_mb`` is RLIMIT_AS per process and
    ``max_processes`` RLIMIT_NPROC (enforced because the program gets its own uid), so the
    worst case is about their product. ``tmp_mb`` sizes the program's writable tmpfs and
    ``file_size_mb`` is RLIMIT_FSIZE. The program runs as module ``module_name`` (another
    name skips its ``if __name__ == "__main__":`` block, as human-eval's harness does by
    executing without ``__name__``). ``mode`` forces a containment mode (default: the
    strongest that works, see :func:`capabilities`). Thread-safe. Raises
    :class:`SandboxError` only when the sandbox itself fails, never for what the program does.
    """
    if mode is None:
        mode = capabilities().mode
    elif mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
    return _run(
        source, tests=list(tests), mode=mode, timeout_s=timeout_s, memory_mb=memory_mb,
        cpu_s=cpu_s, file_size_mb=file_size_mb, max_processes=max_processes,
        max_open_files=max_open_files, tmp_mb=tmp_mb, max_output_bytes=max_output_bytes,
        module_name=module_name,
    )
