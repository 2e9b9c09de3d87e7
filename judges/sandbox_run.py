"""One sandbox run, from the judge's side: the run's configuration, its pipes, the request to
the spawner, reading its output under a deadline, and assembling the result.

Kept apart from :mod:`judges.sandbox` (the API: modes, detection, :func:`run_python`) because
this is the plumbing behind every call, detection's probes included.
"""

from __future__ import annotations

import contextlib
import itertools
import marshal
import math
import os
import secrets
import selectors
import shutil
import sys
import tempfile
import time

from judges.sandbox_result import SandboxError, SandboxResult, ValueProbe, _result
from judges.sandbox_spawner import _spawner

#: Throw-away uids/gids come from this range (far above any real account).
_UID_BASE = 1_600_000_000 + (os.getpid() % 4096) * 65536
_uid_counter = itertools.count()

_READ_CHUNK = 65536
#: The status pipe carries the tests' values too: room for every value record.
_STATUS_LIMIT = 4 << 20
#: Largest value record one test may send (the repr of its plain-data value).
_VALUE_LIMIT = 256 << 10
#: After the wrapper exited, how long to keep draining pipes held by leftovers.
_DRAIN_GRACE_S = 1.0
#: After a timeout kill, how long the spawner may take to report the wrapper's death.
_SPAWNER_GRACE_S = 10.0


def _next_uid() -> int:
    return _UID_BASE + next(_uid_counter) % 65536


def _ro_paths() -> list[str]:
    """Host paths visible (read-only) in the jail: the interpreter, shared libraries, a shell.

    Deliberately absent: the project, home directories, the host's /tmp, /proc, /sys,
    /dev/shm, and all of /etc except the few files libc and the stdlib read.
    """
    paths = ["/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32",
             "/etc/ld.so.cache", "/etc/localtime", "/etc/passwd", "/etc/group",
             "/etc/nsswitch.conf"]
    for prefix in (sys.base_prefix, sys.base_exec_prefix):
        real = os.path.realpath(prefix)
        if not any(real == p or real.startswith(p + "/") for p in paths):
            paths.append(real)
    return [p for p in dict.fromkeys(paths) if os.path.lexists(p)]


_RO_PATHS = _ro_paths()


def _run(source: str, *, tests: list[str | ValueProbe], mode: str, timeout_s: float, memory_mb: int,
         cpu_s: float | None, file_size_mb: int, max_processes: int, max_open_files: int,
         tmp_mb: int, max_output_bytes: int, module_name: str = "__main__") -> SandboxResult:
    uid = _next_uid() if mode in ("namespace", "setuid") else None
    namespaced = mode in ("namespace", "userns")
    # realpath: the jail's mount points must match /proc/self/mountinfo (no symlinks).
    workdir = os.path.realpath(tempfile.mkdtemp(prefix="s3ft-sbx-"))
    cfg = {
        "mode": mode,
        "source": source,
        "tests": [t.wire() if isinstance(t, ValueProbe) else t for t in tests],
        "uid": -1 if uid is None else uid,
        "jail": workdir,
        "cwd": "/tmp" if namespaced else workdir,
        "ro_paths": _RO_PATHS,
        "tmp_kb": tmp_mb * 1024,
        "tmp_inodes": 8192,
        "module_name": module_name,
        "value_limit": _VALUE_LIMIT,
        "limits": {
            "as": memory_mb * 1024 * 1024,
            "cpu": math.ceil(cpu_s if cpu_s is not None else timeout_s + 1.0),
            "fsize": file_size_mb * 1024 * 1024,
            "nofile": max_open_files,
            "nproc": max_processes,
        },
        "env": _program_env("/tmp" if namespaced else workdir),
    }
    ours: list[int] = []   # our ends, closed at the end
    theirs: list[int] = []  # the run's ends, closed once handed to the spawner
    try:
        if mode == "setuid":
            os.chown(workdir, uid, uid)
            os.chmod(workdir, 0o700)
        nonce = secrets.token_hex(16)
        pipes = {name: os.pipe() for name in ("out", "err", "status", "nonce", "result")}
        ours += [pipes["out"][0], pipes["err"][0], pipes["status"][0], pipes["nonce"][1],
                 pipes["result"][0]]
        theirs += [pipes["out"][1], pipes["err"][1], pipes["status"][1], pipes["nonce"][0],
                   pipes["result"][1]]
        os.write(pipes["nonce"][1], nonce.encode())
        # Closed at once: if the program steals the nonce, the harness reads EOF, not a hang.
        os.close(pipes["nonce"][1])
        ours.remove(pipes["nonce"][1])
        cfg_fd = _config_fd(cfg)
        theirs.append(cfg_fd)
        started = time.monotonic()
        rid = _spawner.submit(mode, uid, [cfg_fd, pipes["out"][1], pipes["err"][1],
                                          pipes["status"][1], pipes["nonce"][0],
                                          pipes["result"][1]])
        for fd in theirs:
            os.close(fd)
        theirs.clear()
        streams = _Collector({pipes["out"][0]: max_output_bytes,
                              pipes["err"][0]: max_output_bytes,
                              pipes["status"][0]: _STATUS_LIMIT})
        ours = [pipes["result"][0]]
        try:
            timed_out, status = _supervise(rid, streams, pipes["result"][0],
                                           started + timeout_s)
        finally:
            streams.close()
        duration = time.monotonic() - started
        return _result(
            status, streams, pipes["out"][0], pipes["err"][0], pipes["status"][0],
            timed_out=timed_out, duration=duration, mode=mode, tests=tests, nonce=nonce,
            uid=uid, workdir=workdir,
        )
    finally:
        for fd in ours + theirs:
            with contextlib.suppress(OSError):
                os.close(fd)
        shutil.rmtree(workdir, ignore_errors=True)


def _program_env(home: str) -> dict[str, str]:
    """The program's whole environment: nothing is inherited from the judge."""
    return {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8",
            "HOME": home, "TMPDIR": home, "PYTHONDONTWRITEBYTECODE": "1"}


def _config_fd(cfg: dict) -> int:
    """Hand the configuration over in an anonymous memory file (no size limit, no blocking)."""
    data = marshal.dumps(cfg)
    try:
        fd = os.memfd_create("s3ft-sandbox-cfg", os.MFD_CLOEXEC)
    except (AttributeError, OSError):
        with tempfile.TemporaryFile() as handle:
            fd = os.dup(handle.fileno())
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


class _Collector:
    """Reads several pipes incrementally, keeping at most ``cap`` bytes of each.

    Bytes beyond the cap are read and discarded, so a program printing gigabytes neither
    blocks (it would then look like a timeout) nor grows the judge's memory.
    """

    def __init__(self, caps: dict[int, int]) -> None:
        self.caps = caps
        self.data = {fd: bytearray() for fd in caps}
        self.truncated = dict.fromkeys(caps, False)
        self.open = set(caps)

    def feed(self, fd: int, sel: selectors.BaseSelector) -> None:
        """Read what is available on ``fd``; at EOF unregister it from ``sel`` and close it."""
        try:
            chunk = os.read(fd, _READ_CHUNK)
        except (BlockingIOError, InterruptedError):
            return
        if not chunk:
            sel.unregister(fd)  # before close: the number may be reused at once by a thread
            self.open.discard(fd)
            os.close(fd)
            return
        room = self.caps[fd] - len(self.data[fd])
        if room > 0:
            self.data[fd] += chunk[:room]
        if len(chunk) > room:
            self.truncated[fd] = True

    def close(self) -> None:
        for fd in list(self.open):
            with contextlib.suppress(OSError):
                os.close(fd)
        self.open.clear()


def _supervise(rid: int, streams: _Collector, result_fd: int,
               deadline: float) -> tuple[bool, int | None]:
    """Drain output until the spawner reports the wrapper's exit; kill it at the deadline.

    Returns (timed_out, wait status). The spawner kills the wrapper's process group and
    reaps it; in the namespace modes the wrapper's death takes every process of the run
    with it, so the pipes reach EOF right after.
    """
    timed_out = False
    result = bytearray()
    sel = selectors.DefaultSelector()
    try:
        for fd in [*streams.open, result_fd]:
            os.set_blocking(fd, False)
            sel.register(fd, selectors.EVENT_READ)
        hard_deadline = deadline + _SPAWNER_GRACE_S
        result_open = True
        while result_open:
            now = time.monotonic()
            if not timed_out and now >= deadline:
                timed_out = True
                _spawner.kill(rid)
            if now >= hard_deadline:
                raise SandboxError(f"the sandbox did not stop run {rid} after its timeout")
            limit = deadline if not timed_out else hard_deadline
            for key, _ in sel.select(max(0.0, limit - now)):
                if key.fd == result_fd:
                    try:
                        chunk = os.read(result_fd, 256)
                    except BlockingIOError:
                        continue
                    result += chunk
                    if not chunk:
                        result_open = False
                        sel.unregister(result_fd)
                else:
                    streams.feed(key.fd, sel)
        # Leftovers are dead by now (namespace / process group killed); collect the tail.
        grace = time.monotonic() + _DRAIN_GRACE_S
        while streams.open and time.monotonic() < grace:
            for key, _ in sel.select(max(0.0, grace - time.monotonic())):
                streams.feed(key.fd, sel)
    finally:
        sel.close()
    text = result.decode("ascii", "replace").strip()
    if text.startswith("E"):
        raise SandboxError(f"the sandbox spawner failed: {text[1:].strip()}")
    if not text:
        raise SandboxError("the sandbox spawner died during the run")
    return timed_out, int(text)
