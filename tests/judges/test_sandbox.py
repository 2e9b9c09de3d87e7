"""The sandbox: an attack suite (each attack contained, each harm checked for) and unit tests.

Every attack runs in the strongest mode this machine supports; the suite refuses to run
(fails) when that is not full namespace containment, because several attacks (kill(-1),
fork bombs) are only safe to try inside a PID namespace. Timeouts are kept small so the
file runs in well under a minute.
"""

from __future__ import annotations

import os
import resource
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from judges import sandbox
from judges.sandbox import SandboxResult, run_python

FAST = 1.5  # seconds: the timeout for attacks that are expected to run until killed


@pytest.fixture(scope="module")
def caps() -> sandbox.Capabilities:
    return sandbox.capabilities()


@pytest.fixture
def contained(caps: sandbox.Capabilities) -> sandbox.Capabilities:
    if not caps.full:
        pytest.fail(
            f"the sandbox runs in the weaker {caps.mode!r} mode here ({caps.rejected}); the "
            "attack suite needs PID/mount/network namespaces (root or user namespaces)"
        )
    return caps


@pytest.fixture
def canary(tmp_path: Path) -> Iterator[Path]:
    """A file outside the sandbox, in a directory anyone could write to (so only the
    sandbox stands between an attack and the file)."""
    tmp_path.chmod(0o777)
    path = tmp_path / "canary.txt"
    path.write_text("original\n")
    path.chmod(0o666)
    yield path


def run(source: str, **kwargs) -> SandboxResult:
    kwargs.setdefault("timeout_s", 10.0)
    return run_python(textwrap.dedent(source), **kwargs)


def processes_of_uid(uid: int) -> list[int]:
    """Live (non-zombie) processes owned by ``uid``, from /proc."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            status = Path(f"/proc/{entry}/status").read_text()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        uids = fields.get("Uid", "").split()
        if uids and int(uids[0]) == uid and not fields.get("State", "").strip().startswith("Z"):
            found.append(int(entry))
    return found


def assert_no_leftovers(result: SandboxResult, within_s: float = 2.0) -> None:
    assert result.uid is not None, "this mode does not give the program its own uid"
    deadline = time.monotonic() + within_s
    while processes_of_uid(result.uid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert processes_of_uid(result.uid) == []


# ----------------------------------------------------------------------------------------
# Attack suite
# ----------------------------------------------------------------------------------------
def test_shell_command_cannot_create_files_outside(contained, canary: Path) -> None:
    target = canary.parent / "from_shell.txt"
    result = run(f"""
        import os, subprocess
        print("system:", os.system("echo pwned > {target}; echo shell-ran"))
        subprocess.run(["sh", "-c", "touch {target} {canary}.new; rm -f {canary}"])
        """)
    assert "shell-ran" in result.stdout  # the shell really ran ...
    assert not target.exists()  # ... but could not reach the host's files
    assert not Path(f"{canary}.new").exists()
    assert canary.read_text() == "original\n"


def test_file_write_outside_is_blocked(contained, canary: Path) -> None:
    home_marker = Path.home() / f".s3ft-sandbox-pwned-{secrets.token_hex(4)}"
    project_canary = Path(__file__).resolve().parent / f".sandbox-canary-{secrets.token_hex(4)}"
    project_canary.write_text("original\n")
    project_canary.chmod(0o666)
    try:
        result = run(f"""
            for path in [{str(canary)!r}, {str(canary.parent / "new.txt")!r},
                         {str(home_marker)!r}, {str(project_canary)!r}, "/etc/passwd",
                         "/usr/pwned.txt", "/pwned.txt", "/dev/shm/pwned", "/tmp/../pwned"]:
                try:
                    with open(path, "a") as f:
                        f.write("pwned")
                    print("WROTE", path)
                except OSError as exc:
                    print("blocked", path, exc.errno)
            """)
        assert result.stdout.count("blocked") == 9, result.stdout
        assert canary.read_text() == "original\n"
        assert not (canary.parent / "new.txt").exists()
        assert not home_marker.exists()
        assert project_canary.read_text() == "original\n"
    finally:
        project_canary.unlink()


def test_file_delete_outside_is_blocked(contained, canary: Path) -> None:
    result = run(f"""
        import os, shutil
        for attempt in (lambda: os.remove({str(canary)!r}),
                        lambda: shutil.rmtree({str(canary.parent)!r}),
                        lambda: os.rename({str(canary)!r}, "/tmp/stolen")):
            try:
                attempt()
                print("DELETED")
            except OSError as exc:
                print("blocked", exc.errno)
        """)
    assert result.stdout.count("blocked") == 3, result.stdout
    assert canary.read_text() == "original\n"


def test_fork_bomb_is_contained(contained) -> None:
    started = time.monotonic()
    result = run("""
        import os
        while True:
            try:
                os.fork()
            except OSError:
                pass
        """, timeout_s=FAST)
    elapsed = time.monotonic() - started
    assert elapsed < FAST + 5
    assert not result.completed
    assert result.timed_out or result.killed_by_signal is not None
    assert_no_leftovers(result)


def test_memory_bomb_is_stopped_and_the_judge_is_fine(contained) -> None:
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for source in ("x = bytearray(8 * 1024 ** 3)",
                   "chunks = []\nwhile True:\n    chunks.append(bytearray(50 * 1024 ** 2))"):
        result = run(source, memory_mb=256, timeout_s=10)
        assert not result.completed
        assert not result.timed_out
        memory_error = result.failure is not None and result.failure.exc_type == "MemoryError"
        assert memory_error or result.killed_by_signal is not None
    growth_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before
    assert growth_kb < 100 * 1024


def test_infinite_loop_times_out(contained) -> None:
    started = time.monotonic()
    result = run("while True:\n    pass", tests=["assert True"], timeout_s=1.0)
    assert result.timed_out
    assert not result.completed
    assert 1.0 <= time.monotonic() - started < 6.0
    assert_no_leftovers(result)


def test_loop_ignoring_sigterm_is_killed_anyway(contained) -> None:
    result = run("""
        import signal
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGXCPU):
            signal.signal(sig, signal.SIG_IGN)
        while True:
            pass
        """, timeout_s=1.0)
    assert result.timed_out
    assert_no_leftovers(result)


def test_double_forked_daemon_dies_with_the_run(contained, canary: Path) -> None:
    marker = canary.parent / "daemon_was_here.txt"
    result = run(f"""
        import os, time
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:
                time.sleep(2)
                for path in ({str(marker)!r}, "/tmp/daemon_was_here.txt"):
                    try:
                        open(path, "w").write("alive")
                    except OSError:
                        pass
                os._exit(0)
            os._exit(0)
        print("parent done")
        """, tests=["assert True"])
    assert result.completed
    assert_no_leftovers(result, within_s=1.0)
    time.sleep(4)
    assert not marker.exists()
    assert not Path("/tmp/daemon_was_here.txt").exists()


def test_network_is_unreachable(contained) -> None:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(5)
    listener.settimeout(0.5)
    port = listener.getsockname()[1]
    try:
        result = run(f"""
            import socket
            for host in ("127.0.0.1", "10.0.0.1", "1.1.1.1"):
                try:
                    socket.create_connection((host, {port}), timeout=1).close()
                    print("CONNECTED", host)
                except OSError as exc:
                    print("refused", host, exc.errno)
            try:
                socket.getaddrinfo("pypi.org", 443)
                print("RESOLVED")
            except OSError:
                print("no dns")
            """)
        assert result.stdout.count("refused") == 3, result.stdout
        assert "CONNECTED" not in result.stdout and "RESOLVED" not in result.stdout
        with pytest.raises(TimeoutError):
            listener.accept()  # nobody ever connected
    finally:
        listener.close()


def test_object_subclasses_escape_gains_nothing(contained, canary: Path) -> None:
    target = canary.parent / "via_subclasses.txt"
    result = run(f"""
        wrap = [c for c in ().__class__.__base__.__subclasses__() if c.__name__ == "_wrap_close"]
        system = wrap[0].__init__.__globals__["system"]
        print("system:", system("echo pwned > {target}"))
        importer = [c for c in ().__class__.__base__.__subclasses__()
                    if c.__name__ == "BuiltinImporter"][0]
        posix = importer.load_module("posix")
        try:
            posix.unlink({str(canary)!r})
        except OSError as exc:
            print("unlink blocked", exc.errno)
        try:
            posix.setuid(0)
        except OSError as exc:
            print("setuid blocked", exc.errno)
        """)
    assert "system:" in result.stdout
    assert "unlink blocked" in result.stdout and "setuid blocked" in result.stdout
    assert not target.exists()
    assert canary.read_text() == "original\n"


def test_environment_secrets_are_not_visible(contained, monkeypatch) -> None:
    secret = "s3ft-secret-" + secrets.token_hex(8)
    monkeypatch.setenv("S3FT_TEST_SECRET", secret)
    result = run("""
        import os
        print(dict(os.environ))
        for path in ["/proc/self/environ", "/proc/1/environ", f"/proc/{os.getppid()}/environ"]:
            try:
                print(open(path, "rb").read())
            except OSError as exc:
                print("no", path, exc.errno)
        """)
    assert "PATH" in result.stdout  # the program did print its environment
    assert secret not in result.stdout + result.stderr
    assert "S3FT_TEST_SECRET" not in result.stdout


def test_output_flood_is_capped(contained) -> None:
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.monotonic()
    result = run("""
        import sys
        line = "x" * 65536
        while True:
            sys.stdout.write(line)
            sys.stderr.write(line)
        """, timeout_s=FAST, max_output_bytes=10_000)
    assert time.monotonic() - started < FAST + 5
    assert result.timed_out
    assert len(result.stdout) == 10_000 and result.stdout_truncated
    assert len(result.stderr) == 10_000 and result.stderr_truncated
    growth_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before
    assert growth_kb < 100 * 1024


def test_disk_fill_is_limited(contained) -> None:
    free_before = shutil.disk_usage("/tmp").free
    result = run("""
        total = 0
        try:
            with open("big.bin", "wb") as f:
                while True:
                    f.write(b"\\0" * 2 ** 20)
                    total += 1
        except OSError as exc:
            print("stopped", total, exc.errno)
        """, file_size_mb=8, tmp_mb=32)
    words = result.stdout.split()
    assert words[0] == "stopped", result.stdout
    assert int(words[1]) <= 8  # RLIMIT_FSIZE
    assert not Path(result.workdir).exists()
    assert free_before - shutil.disk_usage("/tmp").free < 64 * 2**20


def test_early_exit_never_passes(contained) -> None:
    exits = {
        "sys.exit": "import sys\nsys.exit(0)",
        "os._exit": "import os\nos._exit(0)",
        "SystemExit": "raise SystemExit",
        "exit()": "exit()",
        "atexit": "import atexit, os, sys\natexit.register(lambda: os._exit(0))\nsys.exit()",
        "fake print": "import builtins, os\nbuiltins.print = lambda *a: None\nos._exit(0)",
        "stdout": "import sys, io, os\nsys.stdout = io.StringIO()\nprint('PASS')\nos._exit(0)",
    }
    for name, source in exits.items():
        result = run(source, tests=["assert False, 'must not be reached'"])
        assert not result.completed, name
        assert result.tests_run == 0, name


def test_forged_completion_record_never_passes(contained) -> None:
    # Writes a plausible "done" record, with a guessed nonce, to every open descriptor.
    result = run("""
        import os
        record = repr(("done", "0" * 32, 1)) + "\\n"
        for fd in range(3, 64):
            try:
                os.write(fd, record.encode())
            except OSError:
                pass
        os._exit(0)
        """, tests=["assert False"])
    assert not result.completed
    assert result.returncode == 0  # it did exit "successfully" ...
    assert result.tests_run == 0  # ... yet no test ran


def test_tampering_with_the_harness_does_not_skip_asserts(contained) -> None:
    for source in (
        "import builtins\nbuiltins.exec = lambda *a, **k: None",
        "import builtins\nbuiltins.compile = lambda *a, **k: compile('pass', '', 'exec')",
        "import builtins\nbuiltins.AssertionError = type('Fake', (Exception,), {})",
        "import sys\ndef tracer(frame, event, arg):\n    return None\nsys.settrace(tracer)",
    ):
        result = run(source, tests=["assert 1 == 2"])
        assert not result.completed, source
        assert result.failure is not None and result.failure.phase == "test", source


@pytest.mark.parametrize("attack", [
    "os.kill(os.getppid(), signal.SIGKILL)",
    "os.killpg(os.getpgid(0), signal.SIGKILL)",
    "os.kill(-1, signal.SIGKILL)",
    "os.kill(1, signal.SIGKILL)",
    "for pid in range(1, 2000):\n    try:\n        os.kill(pid, 9)\n    except OSError:\n"
    "        pass",
])
def test_killing_the_parent_leaves_the_judge_alive(contained, attack: str) -> None:
    bystander = subprocess.Popen(["sleep", "60"])
    try:
        attack_code = textwrap.indent(attack, " " * 4)
        result = run(f"import os, signal\ntry:\n{attack_code}\nexcept OSError:\n    pass\n",
                     tests=["assert True"])
        assert bystander.poll() is None  # an unrelated process outside survived
        os.kill(os.getpid(), 0)  # and so did we
        # The run ended one way or another, and the sandbox still works afterwards.
        assert result.returncode is not None
        assert run("pass", tests=["assert 1"]).completed
    finally:
        bystander.kill()
        bystander.wait()


def test_host_processes_and_privileges_are_out_of_reach(contained) -> None:
    result = run("""
        import os
        print("pids", sorted(int(p) for p in os.listdir("/proc") if p.isdigit())
              if os.path.isdir("/proc") else [])
        for attempt in (lambda: os.setuid(0), lambda: os.chroot("/"),
                        lambda: os.mknod("/tmp/sda", 0o600 | 0o060000, os.makedev(8, 0))):
            try:
                attempt()
                print("ALLOWED")
            except OSError as exc:
                print("denied", exc.errno)
        """)
    assert "pids []" in result.stdout  # no /proc at all: no host process visible
    assert "ALLOWED" not in result.stdout and result.stdout.count("denied") == 3


def test_a_new_user_namespace_cannot_make_the_jail_writable(contained) -> None:
    # unshare(CLONE_NEWUSER) hands out capabilities again, but only over a copy of the
    # mount table whose read-only flags the kernel locks.
    result = run("""
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        print("unshare", libc.unshare(0x10000000 | 0x00020000))
        MS_REMOUNT, MS_BIND = 32, 4096
        for point in (b"/usr", b"/", b"/etc/passwd"):
            print("remount", libc.mount(None, point, None, MS_REMOUNT | MS_BIND, None))
        try:
            open("/usr/pwned.txt", "w")
            print("WROTE")
        except OSError as exc:
            print("blocked", exc.errno)
        """)
    assert result.stdout.count("remount -1") == 3, result.stdout
    assert "blocked" in result.stdout and "WROTE" not in result.stdout
    assert not Path("/usr/pwned.txt").exists()


# ----------------------------------------------------------------------------------------
# Unit tests
# ----------------------------------------------------------------------------------------
def test_capabilities_are_detected_once(caps: sandbox.Capabilities) -> None:
    assert caps.mode in sandbox.MODES
    assert sandbox.capabilities() is caps


def test_a_passing_run_reports_everything() -> None:
    result = run(
        "import sys\nprint('out')\nprint('err', file=sys.stderr)\ndef f(x):\n    return x * 2",
        tests=["assert f(2) == 4", "assert f(0) == 0"],
    )
    assert result.completed
    assert (result.returncode, result.tests_run, result.tests_total) == (0, 2, 2)
    assert result.stdout == "out\n" and result.stderr == "err\n"
    assert result.failure is None and not result.timed_out
    assert not Path(result.workdir).exists()


def test_failures_name_the_phase_and_the_test() -> None:
    failed = run("def f(x):\n    return x", tests=["assert f(1) == 1", "assert f(2) == 3"])
    assert not failed.completed and failed.tests_run == 1
    assert (failed.failure.phase, failed.failure.index) == ("test", 1)
    assert failed.failure.exc_type == "AssertionError"

    syntax = run("def f(:\n    pass", tests=["assert True"])
    assert (syntax.failure.phase, syntax.failure.exc_type) == ("compile", "SyntaxError")

    raised = run("raise KeyError('boom')", tests=["assert True"])
    assert (raised.failure.phase, raised.failure.exc_type) == ("source", "KeyError")
    assert "boom" in raised.failure.message

    bad_test = run("x = 1", tests=["assert x ==", "assert True"])
    assert (bad_test.failure.phase, bad_test.failure.index) == ("test_compile", 0)


def test_the_program_runs_as_main_unless_told_otherwise() -> None:
    source = "import sys\nprint(__name__, sys.modules[__name__].__name__)"
    assert run(source).stdout.split() == ["__main__", "__main__"]
    assert run(source, module_name="solution").stdout.split() == ["solution", "solution"]


def test_exit_code_125_of_a_program_is_not_a_sandbox_failure() -> None:
    result = run("import os\nos._exit(125)", tests=["assert True"])
    assert result.returncode == 1 and not result.completed


def test_cpu_limit_backs_up_the_wall_clock() -> None:
    result = run("while True:\n    pass", timeout_s=20, cpu_s=1)
    assert not result.timed_out
    assert result.killed_by_signal == signal.SIGXCPU


def test_stdin_is_empty_and_cwd_is_a_private_writable_dir() -> None:
    result = run("""
        import os
        try:
            input()
        except EOFError:
            print("eof")
        open("scratch.txt", "w").write("ok")
        print(open("scratch.txt").read(), os.getcwd() == os.environ["HOME"])
        """)
    assert result.stdout.split() == ["eof", "ok", "True"]


def test_many_runs_in_parallel() -> None:
    sources = [f"def f():\n    return {i}" for i in range(16)]
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(
            lambda i: run(sources[i], tests=[f"assert f() == {i}"]), range(16)))
    assert all(r.completed for r in results)
    uids = {r.uid for r in results}
    assert None in uids or len(uids) == 16  # every run got its own uid


def test_the_spawner_is_restarted_if_it_dies() -> None:
    assert run("pass", tests=["assert True"]).completed
    proc = sandbox._spawner._proc
    assert proc is not None
    proc.kill()
    proc.wait()
    assert run("pass", tests=["assert True"]).completed


def _mode_works(mode: str) -> bool:
    try:
        return run("x = 1", tests=["assert x == 1"], mode=mode).completed
    except sandbox.SandboxError:
        return False


@pytest.mark.parametrize("mode", ["userns", "setuid", "pgroup"])
def test_fallback_modes_still_judge_and_kill(mode: str) -> None:
    """The weaker modes, forced. Only benign programs: without a PID namespace, attacks
    like kill(-1) would reach real processes."""
    if not _mode_works(mode):
        pytest.skip(f"mode {mode!r} is not available on this machine")
    assert run("def f():\n    return 1", tests=["assert f() == 1"], mode=mode).completed
    assert not run("import os\nos._exit(0)", tests=["assert False"], mode=mode).completed
    failed = run("x = 2", tests=["assert x == 1"], mode=mode)
    assert failed.failure is not None and failed.failure.phase == "test"
    started = time.monotonic()
    looped = run("while True:\n    pass", timeout_s=1.0, mode=mode)
    assert looped.timed_out and time.monotonic() - started < 6
    parent = run("import os, signal\nos.kill(os.getppid(), signal.SIGKILL)",
                 tests=["assert True"], mode=mode)
    assert not parent.completed
    # Either the disposable wrapper (or, in a user namespace, the program's own group) was
    # killed, or the program's separate uid was not allowed to signal it; never the judge.
    denied = parent.failure is not None and parent.failure.exc_type == "PermissionError"
    assert parent.killed_by_signal == signal.SIGKILL or denied, parent
    assert run("pass", tests=["assert True"], mode=mode).completed


def test_setuid_fallback_sweeps_setsid_escapees() -> None:
    if os.geteuid() != 0 or not _mode_works("setuid"):
        pytest.skip("the setuid mode needs root")
    result = run("""
        import os, time
        if os.fork() == 0:
            os.setsid()
            time.sleep(30)
            os._exit(0)
        """, tests=["assert True"], mode="setuid")
    assert result.completed
    assert_no_leftovers(result)


def test_a_forced_weak_mode_is_detected_with_a_warning(monkeypatch, caplog) -> None:
    monkeypatch.setenv("S3FT_SANDBOX_MODE", "pgroup")
    with caplog.at_level("WARNING", logger="judges.sandbox"):
        caps = sandbox._detect()  # not the cached detection: that stays as it was
    assert caps.mode == "pgroup" and not caps.full
    assert "weaker 'pgroup' mode" in caplog.text


def test_forcing_an_unknown_mode_is_an_error() -> None:
    with pytest.raises(ValueError):
        run_python("pass", mode="nonsense")


def test_judge_threads_are_not_leaked() -> None:
    before = threading.active_count()
    for _ in range(3):
        run("pass")
    assert threading.active_count() == before


def test_sandbox_module_imports_only_the_standard_library() -> None:
    code = ("import sys, judges.sandbox\n"
            "mods = {m.split('.')[0] for m in sys.modules}\n"
            "print(sorted(m for m in mods if m not in sys.stdlib_module_names and "
            "m not in ('judges', '__main__')))")
    # -S: site hooks of the venv (e.g. setuptools' _distutils_hack) are not ours.
    out = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True,
                         cwd=Path(__file__).resolve().parents[2], check=True)
    assert out.stdout.strip() == "[]"
