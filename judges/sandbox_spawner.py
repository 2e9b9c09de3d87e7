"""The judge's client for the sandbox spawner: the one pre-started child process that forks a
wrapper per run.

Separate from :mod:`judges.sandbox_run` because it is a long-lived, shared resource (one
spawner per judge process, started lazily, restarted if it dies, closed at exit), while a
run is a short, per-call conversation with it.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.resources
import itertools
import marshal
import os
import socket
import subprocess
import sys
import threading

from judges.sandbox_result import SandboxError

# --------------------------------------------------------------------------------------
# The child side: the spawner (``python -I -S -B -c _BOOTSTRAP <socket fd>``), the wrapper
# it forks per run, the namespace init and the program's harness. Standard library only,
# imported once per spawner (ctypes for unshare/mount/prctl/capset). The program lives in
# judges/sandbox_child.py; it is read here as text (never imported: its top level loads libc
# and builds the seccomp filter) and handed to the child interpreter unchanged.
# --------------------------------------------------------------------------------------
_BOOTSTRAP = importlib.resources.files(__package__).joinpath("sandbox_child.py").read_text(
    encoding="utf-8")


class _Spawner:
    """The judge's handle on its spawner process (one per judge process, started lazily).

    Starting ``python -I`` per program costs ~20-40 ms of CPU on a small VM, which capped
    throughput near 20 programs/s on 2 cores. The spawner is started once with the same
    isolated interpreter flags and forks a fresh wrapper per program instead; containment
    is unchanged (every run still gets its own namespaces, jail, uid and limits, and the
    spawner itself never executes untrusted code). Requests go over a SEQPACKET socket
    with the run's pipes attached (SCM_RIGHTS); the wrapper's exit status comes back on a
    per-run result pipe. The spawner exits when the judge's end of the socket closes.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._proc: subprocess.Popen | None = None
        self._sock: socket.socket | None = None
        self._owner = 0
        self._ids = itertools.count(1)

    def _alive(self) -> bool:
        return (self._proc is not None and self._owner == os.getpid()
                and self._proc.poll() is None)

    def _start(self) -> None:
        self._stop()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-I", "-S", "-B", "-c", _BOOTSTRAP, str(theirs.fileno())],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                pass_fds=(theirs.fileno(),), close_fds=True, cwd="/",
                env={"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8",
                     "LC_ALL": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1"},
                start_new_session=True,
            )
        except OSError as exc:
            ours.close()
            raise SandboxError(f"cannot start the sandbox spawner: {exc}") from exc
        finally:
            theirs.close()
        self._sock = ours
        self._owner = os.getpid()

    def _stop(self) -> None:
        if self._sock is not None:
            self._sock.close()  # the spawner sees EOF and exits, killing its runs
            self._sock = None
        if self._proc is not None and self._owner == os.getpid():
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(timeout=5)
        self._proc = None

    def submit(self, mode: str, uid: int | None, fds: list[int]) -> int:
        """Ask the spawner to start one run; return its id (for :meth:`kill`)."""
        with self._lock:
            rid = next(self._ids)
            header = marshal.dumps(("run", rid, mode, -1 if uid is None else uid))
            for attempt in range(2):
                if not self._alive():
                    self._start()
                assert self._sock is not None
                try:
                    socket.send_fds(self._sock, [header], fds)
                    return rid
                except OSError as exc:
                    if attempt:
                        raise SandboxError(f"the sandbox spawner is unreachable: {exc}") from exc
                    self._stop()  # broken: replace it
        raise AssertionError("unreachable")

    def kill(self, rid: int) -> None:
        """Kill run ``rid``'s wrapper process group (the namespace dies with it)."""
        with self._lock:
            if self._sock is not None and self._alive():
                with contextlib.suppress(OSError):
                    self._sock.send(marshal.dumps(("kill", rid)))

    def close(self) -> None:
        with self._lock:
            self._stop()


_spawner = _Spawner()
atexit.register(_spawner.close)
