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
"""

from __future__ import annotations

import ast
import atexit
import contextlib
import dataclasses
import itertools
import logging
import marshal
import math
import os
import secrets
import selectors
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

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

#: Exit code the bootstrap uses when the sandbox itself could not be set up.
_SETUP_FAILED = 125
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


class SandboxError(RuntimeError):
    """The sandbox itself failed (not the program): the result would not be trustworthy."""


@dataclass(frozen=True)
class Failure:
    """Why the program stopped early, as reported by the in-child harness.

    kind: ``raised`` (an exception escaped) or ``exit`` (``SystemExit`` before the end).
    phase: ``compile`` (the program does not compile), ``test_compile``, ``source`` (the
        program's top level) or ``test`` (test number ``index``).
    """

    kind: str
    phase: str
    index: int
    exc_type: str
    message: str
    errno: int | None = None


@dataclass(frozen=True)
class SandboxResult:
    """Everything observed about one run. ``completed`` is the only proof of success."""

    returncode: int | None
    stdout: str
    stderr: str
    timed_out: bool
    killed_by_signal: int | None
    duration_s: float
    mode: str
    tests_total: int
    #: Tests that ran without raising (verified by the nonce when ``completed``).
    tests_run: int
    #: Exit code 0, the per-run nonce came back, and every test ran.
    completed: bool
    failure: Failure | None = None
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    #: The throw-away uid the program ran as (None when the mode keeps the caller's uid).
    uid: int | None = None
    #: Host directory used for the run (already deleted when the result is returned).
    workdir: str = ""
    #: The seccomp filter of DENIED_SYSCALLS was in force (False: degraded, see docs).
    seccomp: bool = True
    #: What each :class:`ValueProbe` test evaluated to, by test index, in the harness's
    #: plain-data encoding (decode with :func:`judges.value_tests.decode`); an index with
    #: more than one record (a program writing fake ones) maps to :data:`CONFLICT`.
    values: dict[int, object] = field(default_factory=dict)


#: Marks a test index for which the status pipe carried several value records.
CONFLICT = ("conflict",)


@dataclass(frozen=True)
class ValueProbe:
    """A test whose expression the sandbox only evaluates: the value comes back as plain data
    and is compared with the expected one outside, by the judge (see judges/value_tests.py).

    ``names`` are every name the expression reads; ``callee`` is the function under test,
    the one name taken from the program even when a builtin has it too.
    """

    expression: str
    names: tuple[str, ...]
    callee: str = ""

    def wire(self) -> tuple:
        params = ", ".join(self.names)
        return ("eval", f"lambda {params}: ({self.expression})", tuple(self.names), self.callee)


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


# --------------------------------------------------------------------------------------
# The child side: the spawner (``python -I -S -B -c _BOOTSTRAP <socket fd>``), the wrapper
# it forks per run, the namespace init and the program's harness. Standard library only,
# imported once per spawner (ctypes for unshare/mount/prctl/capset).
# --------------------------------------------------------------------------------------
_BOOTSTRAP = r'''
import os, sys, marshal, signal, resource, ctypes, builtins, _sitebuiltins, types, collections

CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC = 0x00020000, 0x04000000, 0x08000000
CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x10000000, 0x20000000, 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT = 1, 2, 4, 8, 32
MS_NOATIME, MS_NODIRATIME, MS_BIND, MS_REC, MS_PRIVATE = 1024, 2048, 4096, 16384, 1 << 18
MS_RELATIME, MNT_DETACH = 1 << 21, 2
PR_SET_PDEATHSIG, PR_SET_NO_NEW_PRIVS = 1, 38
PIVOT_ROOT = {"x86_64": 155, "aarch64": 41, "riscv64": 41, "ppc64le": 203, "s390x": 217}
SETUP_FAILED = 125
libc = ctypes.CDLL(None, use_errno=True)
CFG = {}
# Kernel surfaces no judged program needs, refused with EPERM by a seccomp filter: the
# keyring (a program could read, destroy or plant the spawner's keys), anonymous and SysV
# shared memory (not counted by RLIMIT_AS), message queues, and a few attack-only calls.
PR_SET_SECCOMP, SECCOMP_MODE_FILTER, KEYCTL_JOIN_SESSION_KEYRING = 22, 2, 1
DENIED_SYSCALLS = {
    "x86_64": (0xC000003E, {"keyctl": 250, "add_key": 248, "request_key": 249,
                            "memfd_create": 319, "shmget": 29, "shmat": 30, "shmctl": 31,
                            "msgget": 68, "semget": 64, "mq_open": 240, "userfaultfd": 323,
                            "bpf": 321, "perf_event_open": 298}),
    "aarch64": (0xC00000B7, {"keyctl": 219, "add_key": 217, "request_key": 218,
                             "memfd_create": 279, "shmget": 194, "shmat": 196, "shmctl": 195,
                             "msgget": 186, "semget": 190, "mq_open": 180, "userfaultfd": 282,
                             "bpf": 280, "perf_event_open": 241}),
}


def report(*fields):
    # One repr()'d tuple per line; the judge parses it with ast.literal_eval.
    try:
        os.write(CFG["status_fd"], (repr(fields) + "\n").encode("utf-8", "backslashreplace"))
    except BaseException:
        pass


def check(ret, what):
    if ret != 0:
        err = ctypes.get_errno()
        raise OSError(err, what + ": " + os.strerror(err))


def b(s):
    return None if s is None else os.fsencode(s)


def mount(src, target, fstype, flags, data=None):
    check(libc.mount(b(src), b(target), b(fstype), ctypes.c_ulong(flags), b(data)),
          "mount " + str(target))


def prctl(option, arg):
    check(libc.prctl(option, ctypes.c_ulong(arg), ctypes.c_ulong(0), ctypes.c_ulong(0),
                     ctypes.c_ulong(0)), "prctl")


def write_file(path, text):
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def enter_namespaces():
    flags = CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS
    if CFG["mode"] == "userns":
        uid, gid = os.geteuid(), os.getegid()
        check(libc.unshare(flags | CLONE_NEWUSER), "unshare")
        # Map only ourselves: inside we are "root" of an otherwise empty user namespace.
        write_file("/proc/self/setgroups", "deny")
        write_file("/proc/self/uid_map", "0 %d 1" % uid)
        write_file("/proc/self/gid_map", "0 %d 1" % gid)
    else:
        check(libc.unshare(flags), "unshare")


def unescape_mountinfo(path):
    # mountinfo escapes space, tab, newline and backslash as \ooo.
    out, i = bytearray(), 0
    raw = path.encode("utf-8", "surrogateescape")
    while i < len(raw):
        if raw[i:i + 1] == b"\\" and raw[i + 1:i + 4].isdigit():
            out.append(int(raw[i + 1:i + 4], 8))
            i += 4
        else:
            out.append(raw[i])
            i += 1
    return os.fsdecode(bytes(out))


def mounts_under(prefix):
    with open("/proc/self/mountinfo", "rb") as f:
        lines = f.read().decode("utf-8", "surrogateescape").splitlines()
    points = [unescape_mountinfo(line.split(" ")[4]) for line in lines]
    return [p for p in points if p == prefix or p.startswith(prefix + "/")]


def remount_readonly(point):
    # In a user namespace, flags inherited from a more privileged mount (nosuid, noexec,
    # atime) are locked; a remount must repeat them or it fails with EPERM.
    st = os.statvfs(point)
    flags = MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV
    for st_flag, ms_flag in ((8, MS_NOEXEC), (1024, MS_NOATIME), (2048, MS_NODIRATIME),
                             (4096, MS_RELATIME)):
        if st.f_flag & st_flag:
            flags |= ms_flag
    mount(None, point, None, flags)


def bind_into(root, path):
    dst = root + path
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    if os.path.islink(path):
        os.symlink(os.readlink(path), dst)  # e.g. /bin -> usr/bin on merged-/usr systems
        return
    if os.path.isdir(path):
        os.makedirs(dst, exist_ok=True)
    else:
        os.close(os.open(dst, os.O_WRONLY | os.O_CREAT, 0o644))
    mount(path, dst, None, MS_BIND | MS_REC)


def build_jail():
    root = CFG["jail"]
    # Nothing we mount may propagate back to the host's mount namespace.
    mount(None, "/", None, MS_REC | MS_PRIVATE)
    mount("tmpfs", root, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,nr_inodes=4096,mode=755")
    for path in CFG["ro_paths"]:
        bind_into(root, path)
    # Everything bound from the host becomes read-only, including nested mounts.
    for point in mounts_under(root):
        if point != root:
            remount_readonly(point)
    # Fail closed: refuse to run anything if a host path is still writable in the jail.
    for path in CFG["ro_paths"]:
        if not os.path.islink(root + path) and not os.statvfs(root + path).f_flag & 1:
            raise OSError("jail: %s is not read-only" % path)
    # Device nodes stay writable (writing /dev/null is harmless); no /proc, /sys, /dev/shm.
    os.mkdir(root + "/dev", 0o755)
    for name in ("null", "zero", "full", "random", "urandom"):
        if os.path.exists("/dev/" + name):
            bind_into(root, "/dev/" + name)
    # The only writable place: a small tmpfs owned by the program's uid, gone with the ns.
    os.mkdir(root + "/tmp", 0o700)
    owner = CFG["uid"] if CFG["mode"] == "namespace" else 0
    mount("tmpfs", root + "/tmp", "tmpfs", MS_NOSUID | MS_NODEV,
          "size=%dk,nr_inodes=%d,mode=700,uid=%d,gid=%d"
          % (CFG["tmp_kb"], CFG["tmp_inodes"], owner, owner))
    mount(None, root, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)
    os.chdir(root)
    number = PIVOT_ROOT.get(os.uname().machine)
    if number is not None:
        # pivot_root(".", ".") stacks the old root on top; detaching it leaves no path back.
        check(libc.syscall(ctypes.c_long(number), b".", b"."), "pivot_root")
        check(libc.umount2(b".", MNT_DETACH), "umount old root")
    else:
        # Safe only because the program never holds CAP_SYS_CHROOT (see drop_privileges).
        os.chroot(".")
    os.chdir("/")


def alive_check(alive_r):
    # pdeathsig is set; if the wrapper already died before that, its pipe end is closed.
    os.set_blocking(alive_r, False)
    try:
        if os.read(alive_r, 1) == b"":
            os._exit(1)
    except BlockingIOError:
        pass
    os.close(alive_r)


def init_process(alive_r, alive_w):
    # PID 1 of the namespace: reap orphans until the wrapper kills us (which kills them all).
    try:
        os.close(alive_w)
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        alive_check(alive_r)
        os.closerange(0, 65536)
        signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGCHLD])
        while True:
            signal.sigwait([signal.SIGCHLD])
            while True:
                try:
                    pid, _ = os.waitpid(-1, os.WNOHANG)
                except ChildProcessError:
                    break
                if pid == 0:
                    break
    finally:
        os._exit(0)


def set_limits():
    lim = CFG["limits"]
    for name, value in (("RLIMIT_CORE", 0), ("RLIMIT_AS", lim["as"]), ("RLIMIT_CPU", lim["cpu"]),
                        ("RLIMIT_FSIZE", lim["fsize"]), ("RLIMIT_NOFILE", lim["nofile"]),
                        ("RLIMIT_NPROC", lim["nproc"]), ("RLIMIT_MEMLOCK", 0),
                        ("RLIMIT_MSGQUEUE", 0)):
        res = getattr(resource, name, None)
        if res is not None:
            # CPU: SIGXCPU at the soft limit, SIGKILL one second later (if it was ignored).
            hard = value + 1 if name == "RLIMIT_CPU" else value
            resource.setrlimit(res, (value, hard))


def drop_capabilities():
    # capset(2) with all-zero sets: "root" inside the user namespace keeps no capability,
    # so it cannot remount the read-only binds, chroot out, or mount anything.
    class Header(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

    class Data(ctypes.Structure):
        _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                    ("inheritable", ctypes.c_uint32)]

    data = (Data * 2)()
    check(libc.capset(ctypes.byref(Header(0x20080522, 0)), data), "capset")


def new_session_keyring():
    # A fresh, empty session keyring: the program does not possess the spawner's keys.
    table = DENIED_SYSCALLS.get(os.uname().machine)
    if table is not None:
        libc.syscall(ctypes.c_long(table[1]["keyctl"]), ctypes.c_long(KEYCTL_JOIN_SESSION_KEYRING),
                     ctypes.c_void_p(None))


class SockFilter(ctypes.Structure):
    _fields_ = [("code", ctypes.c_ushort), ("jt", ctypes.c_ubyte), ("jf", ctypes.c_ubyte),
                ("k", ctypes.c_uint32)]


class SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(SockFilter))]


def build_seccomp_program():
    """The BPF program (built once, in the spawner; every forked run installs it)."""
    spec = DENIED_SYSCALLS.get(os.uname().machine)
    if spec is None:
        return None
    audit_arch, table = spec
    ld, jeq, jge, ret = 0x20, 0x15, 0x35, 0x06
    allow, deny = 0x7FFF0000, 0x00050000 | 1  # SECCOMP_RET_ALLOW, SECCOMP_RET_ERRNO | EPERM
    prog = [(ld, 0, 0, 4), (jeq, 1, 0, audit_arch), (ret, 0, 0, deny), (ld, 0, 0, 0)]
    checks = ([(jge, 0x40000000)] if audit_arch == 0xC000003E else [])  # x32 ABI numbers
    checks += [(jeq, nr) for nr in sorted(table.values())]
    deny_at = len(prog) + len(checks) + 1
    for code, k in checks:
        prog.append((code, deny_at - len(prog) - 1, 0, k))
    prog += [(ret, 0, 0, allow), (ret, 0, 0, deny)]
    filters = (SockFilter * len(prog))(*[SockFilter(*f) for f in prog])
    return filters, SockFprog(len(prog), filters)


SECCOMP_PROGRAM = build_seccomp_program()


def install_seccomp():
    """Deny DENIED_SYSCALLS with EPERM (and every call of a foreign syscall ABI); return
    None, or why no filter could be installed (the run then goes on, degraded, and says so)."""
    if SECCOMP_PROGRAM is None:
        return "no syscall table for " + os.uname().machine
    if libc.prctl(PR_SET_SECCOMP, ctypes.c_ulong(SECCOMP_MODE_FILTER),
                  ctypes.byref(SECCOMP_PROGRAM[1]), ctypes.c_ulong(0), ctypes.c_ulong(0)) != 0:
        return "prctl(PR_SET_SECCOMP): " + os.strerror(ctypes.get_errno())
    return None


def drop_privileges():
    mode = CFG["mode"]
    if mode in ("namespace", "setuid"):
        os.setgroups([])
        os.setgid(CFG["uid"])
        os.setuid(CFG["uid"])  # all-nonzero uids: the kernel clears every capability
    elif mode == "userns":
        drop_capabilities()
    prctl(PR_SET_NO_NEW_PRIVS, 1)


def program_process(alive_r, alive_w, ready_r, ready_w):
    try:
        os.close(alive_w)
        os.close(ready_r)
        if CFG["mode"] in ("namespace", "userns"):
            # Own session: kill(0)/killpg() from the program cannot reach the wrapper's group.
            os.setsid()
        os.chdir(CFG["cwd"])
        os.environ.clear()  # nothing inherited: only what the judge chose
        os.environ.update(CFG["env"])
        set_limits()
        new_session_keyring()
        drop_privileges()
        # Set after the uid change (a credential change clears it).
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        refused = install_seccomp()  # after no_new_privs (drop_privileges), before the program
        if refused:
            report("seccomp_off", refused)
        alive_check(alive_r)
        for fd in (CFG["status_fd"], CFG["nonce_fd"]):
            os.set_inheritable(fd, False)
        # Tell the wrapper that setup succeeded; the program never sees this pipe, so an
        # exit code of 125 from the program cannot pass for a sandbox failure.
        os.write(ready_w, b"1")
        os.close(ready_w)
    except BaseException as exc:
        report("setup", "%s: %s" % (type(exc).__name__, exc))
        os._exit(SETUP_FAILED)
    try:
        harness()
    finally:
        os._exit(1)


def harness():
    # Capture everything the harness needs before the program can monkeypatch it.
    _exec, _eval, _compile, _len, _range, _repr, _str, _type = (
        exec, eval, compile, len, range, repr, str, type)
    _getattr, _isinstance, _int = getattr, isinstance, int
    _float, _bytes, _bool, _list, _tuple, _dict, _set, _frozenset, _none, _complex = (
        float, bytes, bool, list, tuple, dict, set, frozenset, type(None), complex)
    # The standard library's own dict types; read through dict.items, never their methods.
    _dicts = (dict, collections.Counter, collections.OrderedDict, collections.defaultdict)
    _items = dict.items
    _BaseException, _SystemExit, _SyntaxError = BaseException, SystemExit, SyntaxError
    _NameError, _TypeError, _ValueError = NameError, TypeError, ValueError
    _write, _read, _exit = os.write, os.read, os._exit
    _settrace, _setprofile = sys.settrace, sys.setprofile
    # The tests' own names resolve to these, never to what the program defines or patches.
    _pristine = _dict(builtins.__dict__)
    status_fd, nonce_fd = CFG["status_fd"], CFG["nonce_fd"]
    source, tests, module_name = CFG["source"], CFG["tests"], CFG["module_name"]
    value_limit = CFG.get("value_limit", 1 << 20)

    def send(*fields):
        try:
            _write(status_fd, (_repr(fields) + "\n").encode("utf-8", "backslashreplace"))
        except _BaseException:
            pass

    def flush():
        for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
            try:
                stream.flush()
            except _BaseException:
                pass

    def fail(phase, index, exc):
        try:
            name = _type(exc).__name__
            if not _isinstance(name, _str):
                name = "?"
            message = _str(exc)[:2000]
            errno = _getattr(exc, "errno", None)
            if not _isinstance(errno, _int):
                errno = None
            if _isinstance(exc, _SyntaxError) and exc.lineno:
                message = "%s (line %d)" % (message, exc.lineno)
        except _BaseException:
            name, message, errno = "?", "<unprintable exception>", None
        kind = "exit" if _isinstance(exc, _SystemExit) else "raised"
        flush()
        send(kind, phase, index, name[:200], message, errno)
        _exit(1)

    def plain(value, depth):
        # Only exact built-in data types (no subclass, nothing with code attached): the
        # judge compares these outside the sandbox, so a custom __eq__ never runs there.
        kind = _type(value)
        if depth > 64:
            raise _ValueError("the value is nested deeper than 64 levels")
        if kind is _none or kind is _bool or kind is _int or kind is _str or kind is _bytes:
            return value
        if kind is _float:
            return ("f", _repr(value))
        if kind is _complex:
            return ("c", _repr(value))
        if kind is _list or kind is _tuple or kind is _set or kind is _frozenset:
            tag = "L" if kind is _list else "T" if kind is _tuple else "S" if kind is _set else "FS"
            return (tag, [plain(item, depth + 1) for item in value])
        if kind in _dicts:
            return ("D", [[plain(k, depth + 1), plain(v, depth + 1)] for k, v in _items(value)])
        raise _TypeError("returned a %s, not a plain value (int, float, complex, str, bytes, "
                         "bool, None, list, tuple, dict, set)" % kind.__name__)

    # `site` would add exit()/quit(); -S skips it, so add them for programs that call them.
    builtins.exit = _sitebuiltins.Quitter("exit", "Ctrl-D (i.e. EOF)")
    builtins.quit = _sitebuiltins.Quitter("quit", "Ctrl-D (i.e. EOF)")
    try:
        code = _compile(source, "<program>", "exec")
    except _BaseException as exc:
        fail("compile", -1, exc)
    compiled = []
    for i in _range(_len(tests)):
        try:
            test = tests[i]
            if _isinstance(test, _str):
                compiled.append(("exec", _compile(test, "<test %d>" % i, "exec"), (), ""))
            else:  # ("eval", "lambda a, b: (expression)", names, callee)
                compiled.append(("eval", _compile(test[1], "<test %d>" % i, "eval"), test[2],
                                 test[3]))
        except _BaseException as exc:
            fail("test_compile", i, exc)
    module = types.ModuleType(module_name)
    module.__dict__["__builtins__"] = builtins
    sys.modules[module_name] = module  # (pickle finds the program's classes through it)
    sys.argv = [""]
    CFG.clear()
    try:
        _exec(code, module.__dict__)
    except _BaseException as exc:
        fail("source", -1, exc)
    # A trace function installed by the program could jump over assert lines.
    _settrace(None)
    _setprofile(None)
    ran = 0
    for i in _range(_len(compiled)):
        kind, test_code, names, callee = compiled[i]
        try:
            if kind == "exec":
                _exec(test_code, module.__dict__)
            else:
                # Bind every name the expression uses before any program code runs: the
                # function under test (and names no builtin has) from the program, all
                # else from the pristine builtins; as the lambda's parameters they are
                # fast locals, which the program's code cannot rebind.
                args = []
                for name in names:
                    if name != callee and name in _pristine:
                        args.append(_pristine[name])
                    elif name in module.__dict__:
                        args.append(module.__dict__[name])
                    else:
                        raise _NameError("name %r is not defined" % name)
                probe = _eval(test_code, {"__builtins__": {}})
                record = _repr(("value", i, plain(probe(*args), 0)))
                if _len(record) > value_limit:
                    raise _ValueError("the value is larger than %d bytes" % value_limit)
                _write(status_fd, (record + "\n").encode("utf-8", "backslashreplace"))
        except _BaseException as exc:
            fail("test", i, exc)
        ran += 1
    flush()
    # The nonce is read only now: before this point it was in no Python object at all.
    nonce = _read(nonce_fd, 256).decode("ascii", "replace")
    send("done", nonce, ran)
    _exit(0)


def mirror_exit(status, ready):
    if not ready:
        os._exit(SETUP_FAILED)  # the program process failed before running anything
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        try:
            signal.signal(sig, signal.SIG_DFL)
        except (OSError, ValueError):
            pass
        os.kill(os.getpid(), sig)
        os._exit(128 + sig)
    code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else 1
    os._exit(1 if code == SETUP_FAILED else code)  # 125 is reserved for sandbox failures


def sweep_uid(uid):
    # setuid mode: every process still owned by the throw-away uid is a leftover; kill(-1)
    # as that uid reaches exactly those (and cannot reach anything else).
    pid = os.fork()
    if pid == 0:
        try:
            os.setgid(uid)
            os.setuid(uid)
            os.kill(-1, signal.SIGKILL)
        finally:
            os._exit(0)
    os.waitpid(pid, 0)


def wrapper(cfg_fd, status_fd, nonce_fd, server_pid):
    # Process A: the disposable direct child of the spawner. It builds the sandbox, forks
    # the namespace's init (B) and the program (C), waits for C and mirrors its exit.
    global CFG
    try:
        # If the spawner dies, the whole tree goes with it.
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != server_pid:
            os._exit(SETUP_FAILED)
        with open(cfg_fd, "rb") as f:
            CFG = marshal.loads(f.read())
        CFG["status_fd"], CFG["nonce_fd"] = status_fd, nonce_fd
        mode = CFG["mode"]
        os.chdir(CFG["jail"])
        if mode in ("namespace", "userns"):
            enter_namespaces()
            build_jail()
        alive_r, alive_w = os.pipe()
        ready_r, ready_w = os.pipe()
        init = None
        if mode in ("namespace", "userns"):
            # The init inherits SIGCHLD blocked, so no orphan's exit is missed by sigwait.
            signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGCHLD])
            init = os.fork()  # becomes PID 1 of the new PID namespace
            if init == 0:
                os.close(ready_r)
                os.close(ready_w)
                init_process(alive_r, alive_w)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGCHLD])
        child = os.fork()
        if child == 0:
            program_process(alive_r, alive_w, ready_r, ready_w)
    except BaseException as exc:
        report("setup", "%s: %s" % (type(exc).__name__, exc))
        os._exit(SETUP_FAILED)
    os.close(alive_r)
    os.close(ready_w)
    os.closerange(0, 3)
    for fd in (status_fd, nonce_fd):
        os.close(fd)
    _, status = os.waitpid(child, 0)
    os.set_blocking(ready_r, False)
    try:
        ready = os.read(ready_r, 1) == b"1"
    except BlockingIOError:
        ready = False
    if init is not None:
        os.kill(init, signal.SIGKILL)  # the kernel now kills everything left in the namespace
        os.waitpid(init, 0)
    # (setuid mode: the spawner sweeps the uid after reaping us, also after a timeout.)
    mirror_exit(status, ready)


def close_all_except(keep):
    low = 0
    for fd in sorted(keep):
        if low < fd:  # closerange(n, n) would close everything on some Python versions
            os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, 1 << 20)


def start_wrapper(header, fds, running, server_pid):
    _, rid, mode, uid = header
    cfg_fd, out_w, err_w, status_w, nonce_r, result_w = fds
    try:
        pid = os.fork()
    except OSError as exc:
        os.write(result_w, ("E fork failed: %s\n" % exc).encode())
        for fd in fds:
            os.close(fd)
        return
    if pid == 0:
        try:
            signal.set_wakeup_fd(-1)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            os.setsid()  # its own process group: the spawner kills it (and leftovers) by group
            os.dup2(out_w, 1)
            os.dup2(err_w, 2)
            # Nothing of the spawner (its socket, other runs' pipes) may leak into the run.
            close_all_except({0, 1, 2, cfg_fd, status_w, nonce_r})
            wrapper(cfg_fd, status_w, nonce_r, server_pid)
        finally:
            os._exit(SETUP_FAILED)
    for fd in (cfg_fd, out_w, err_w, status_w, nonce_r):
        os.close(fd)
    running[rid] = (pid, result_w, mode, uid)


def reap(running):
    for rid, (pid, result_w, mode, uid) in list(running.items()):
        try:
            info = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            info = True
        if info is None:
            continue
        # Still unreaped, so the group id cannot have been reused: kill the leftovers.
        try:
            os.killpg(pid, signal.SIGKILL)
        except OSError:
            pass
        try:
            status = os.waitpid(pid, 0)[1]
            message = "%d\n" % status
        except ChildProcessError:
            message = "E wrapper vanished\n"
        if mode == "setuid":
            sweep_uid(uid)
        try:
            os.write(result_w, message.encode())
        except OSError:
            pass
        os.close(result_w)
        del running[rid]


def kill_run(running, rid):
    entry = running.get(rid)
    if entry is not None:  # not reaped yet, so pid and group id are still ours
        try:
            os.killpg(entry[0], signal.SIGKILL)
        except OSError:
            pass


def serve(sock_fd):
    # The spawner: single-threaded (so forking it is safe), never runs untrusted code,
    # pre-imports what the wrappers need; one fork per program replaces an interpreter start.
    import selectors, socket
    server_pid = os.getpid()
    sock = socket.socket(fileno=sock_fd)
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda signum, frame: None)
    sel = selectors.DefaultSelector()
    sel.register(sock, selectors.EVENT_READ)
    sel.register(wake_r, selectors.EVENT_READ)
    running = {}
    while True:
        for key, _ in sel.select():
            if key.fileobj is sock:
                try:
                    msg, fds, _, _ = socket.recv_fds(sock, 4096, 16)
                except OSError:
                    msg, fds = b"", []
                if not msg:  # the judge is gone: take every run down with us
                    for rid in list(running):
                        kill_run(running, rid)
                    os._exit(0)
                header = marshal.loads(msg)  # trusted: only the judge holds the other end
                if header[0] == "run" and len(fds) == 6:
                    start_wrapper(header, fds, running, server_pid)
                elif header[0] == "kill":
                    kill_run(running, header[1])
                else:
                    for fd in fds:
                        os.close(fd)
            else:
                try:
                    while os.read(wake_r, 4096):
                        pass
                except BlockingIOError:
                    pass
        reap(running)


serve(int(sys.argv[1]))
'''


# --------------------------------------------------------------------------------------
# The judge side.
# --------------------------------------------------------------------------------------
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


def _parse_status(raw: bytes) -> list[tuple]:
    """Parse the harness's records; anything malformed (the program may write here too)
    is ignored. literal_eval only builds literals, so hostile input cannot run code."""
    records = []
    for line in raw.decode("utf-8", "replace").splitlines():
        try:
            value = ast.literal_eval(line)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            continue
        if isinstance(value, tuple) and value and isinstance(value[0], str):
            records.append(value)
    return records


def _failure_from(record: tuple) -> Failure | None:
    try:
        kind, phase, index, exc_type, message, errno = record
    except ValueError:
        return None
    if not (isinstance(phase, str) and isinstance(index, int) and isinstance(exc_type, str)
            and isinstance(message, str) and (errno is None or isinstance(errno, int))):
        return None
    return Failure(kind, phase, index, exc_type, message, errno)


def _result(status: int | None, streams: _Collector, out_r: int, err_r: int,
            status_r: int, *, timed_out: bool, duration: float, mode: str, tests: list,
            nonce: str, uid: int | None, workdir: str) -> SandboxResult:
    returncode = None if status is None else os.waitstatus_to_exitcode(status)
    records = _parse_status(bytes(streams.data[status_r]))
    setup = [r for r in records if r[0] == "setup" and len(r) == 2]
    # Exit code 125 is reserved: the wrapper maps a program's own 125 to 1.
    if returncode == _SETUP_FAILED and not timed_out:
        detail = setup[-1][1] if setup else "no detail"
        stderr_tail = bytes(streams.data[err_r])[-500:].decode("utf-8", "replace")
        if stderr_tail:
            detail += f"; stderr: {stderr_tail}"
        raise SandboxError(f"sandbox setup failed in mode {mode!r}: {detail}")
    done = any(
        r[0] == "done" and len(r) == 3 and r[1] == nonce and r[2] == len(tests) for r in records
    )
    failure = None
    values: dict[int, object] = {}
    for record in records:
        if record[0] in ("raised", "exit"):
            failure = _failure_from(record) or failure
        elif record[0] == "value" and len(record) == 3 and isinstance(record[1], int):
            values[record[1]] = CONFLICT if record[1] in values else record[2]
    if done:
        tests_run = len(tests)
    elif failure is not None and failure.phase == "test":
        tests_run = failure.index
    else:
        tests_run = 0
    signal_number = -returncode if returncode is not None and returncode < 0 else None
    return SandboxResult(
        returncode=returncode,
        stdout=bytes(streams.data[out_r]).decode("utf-8", "replace"),
        stderr=bytes(streams.data[err_r]).decode("utf-8", "replace"),
        timed_out=timed_out,
        killed_by_signal=None if timed_out else signal_number,
        duration_s=duration,
        mode=mode,
        tests_total=len(tests),
        tests_run=tests_run,
        completed=done and returncode == 0 and not timed_out,
        failure=None if done else failure,
        stdout_truncated=streams.truncated[out_r],
        stderr_truncated=streams.truncated[err_r],
        uid=uid,
        workdir=workdir,
        values=values,
        seccomp=not any(r[0] == "seccomp_off" for r in records),
    )
