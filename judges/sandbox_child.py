"""The sandbox's child program: the spawner, the per-run wrapper, the namespace init and the
program's harness (see judges/sandbox.py and docs/sandbox.md for what each one does).

Why a separate file: this code never runs in the judge's process. It used to live in a
string constant inside judges/sandbox.py, where no linter, IDE or coverage tool could see
it; as a real file it is checked like the rest of the project.

How it is used: judges/sandbox_spawner.py reads this file's text once at import (``_BOOTSTRAP``)
and starts the spawner with ``sys.executable -I -S -B -c <this text> <socket fd>``, exactly
as before, so the child runs as ``__main__`` in a bare interpreter (``-I -S``: no site,
no PYTHON* variables, neither the project nor the current directory on sys.path).

Rules for editing it:

* standard library only, and never import anything from this project (``judges``,
  ``pipeline``...): none of it can be imported in the child;
* do not import this module from the judge (its top level loads libc and builds the seccomp
  program); the spawner loop on ``sys.argv[1]`` starts only under ``__name__ == "__main__"``
  (always the case with ``-c``), so an accidental import no longer starts serving;
* keep it ASCII and reasonably small: the whole text travels in the spawner's argv;
* the harness captures builtins before the untrusted program runs and uses only those
  references afterwards; keep helper calls there to builtins (no contextlib and friends).
"""

import os, sys, marshal, signal, resource, ctypes, builtins, _sitebuiltins, types, collections  # noqa: E401, I001 (kept verbatim from the old embedded string)

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
    import selectors, socket  # noqa: E401, I001 (only the spawner needs them)
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


if __name__ == "__main__":  # always so under ``python -c``; an import does not serve
    serve(int(sys.argv[1]))
