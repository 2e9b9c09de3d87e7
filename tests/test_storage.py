import hashlib
import multiprocessing
import os
import signal

import polars as pl
import pytest

from pipeline.storage import RunLock, RunLockedError, StageDir, file_digest, file_sha256


def test_a_shard_counts_only_with_its_marker_and_matching_input(tmp_path):
    stage = StageDir(tmp_path / "generate-abc")
    frame = pl.DataFrame({"id": ["a", "b"], "x": [1, 2]})
    assert stage.completed(0, "d1") is None
    stage.write(0, frame, {"input_digest": "d1", "stats": {"rows": 2}})
    assert stage.completed(0, "d1")["stats"] == {"rows": 2}
    assert stage.completed(0, "other-input") is None
    assert stage.read(0).equals(frame)
    # A parquet without its marker (killed between rename and marker) is not complete.
    stage.marker_path(0).unlink()
    assert stage.completed(0, "d1") is None
    # No temp files are left behind.
    assert sorted(p.name for p in stage.root.iterdir()) == ["shard-00000.parquet"]


def test_file_hashes_are_the_sha256_of_the_whole_file(tmp_path):
    """A data file's digest (the stages' input key) and a model file's hash cover every byte,
    also past the first read block."""
    path = tmp_path / "big.bin"
    data = os.urandom(3 << 20) + b"tail"
    path.write_bytes(data)
    assert file_sha256(path) == hashlib.sha256(data).hexdigest()
    assert file_digest(path) == hashlib.sha256(data).hexdigest()[:16]
    path.write_bytes(data[:-1] + b"T")  # the last byte alone changes both
    assert file_sha256(path) != hashlib.sha256(data).hexdigest()


def test_a_corrupt_marker_means_recompute(tmp_path):
    stage = StageDir(tmp_path / "s")
    stage.write(0, pl.DataFrame({"id": ["a"]}), {"input_digest": "d"})
    stage.marker_path(0).write_text("{not json")
    assert stage.completed(0, "d") is None


def _hold_lock(path, ready, release):
    with RunLock(path):
        ready.set()
        release.wait(30)


def test_second_run_on_the_same_folder_is_refused(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    ready, release = ctx.Event(), ctx.Event()
    holder = ctx.Process(target=_hold_lock, args=(tmp_path, ready, release))
    holder.start()
    try:
        assert ready.wait(30)
        with pytest.raises(RunLockedError, match=f"pid {holder.pid}"), RunLock(tmp_path):
            pass
    finally:
        release.set()
        holder.join(30)
    with RunLock(tmp_path):  # free again once the holder is done
        pass


def test_lock_of_a_killed_run_does_not_block(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    ready, release = ctx.Event(), ctx.Event()
    holder = ctx.Process(target=_hold_lock, args=(tmp_path, ready, release))
    holder.start()
    assert ready.wait(30)
    os.kill(holder.pid, signal.SIGKILL)
    holder.join(30)
    with RunLock(tmp_path):
        assert (tmp_path / "run.lock").read_text() == str(os.getpid())
