"""A torch extension build lock left by a killed build is cleared; a fresh one (a build under way) is not."""
import os
import time

from chatflow_plugin.hosts.extensions import STALE_AFTER, clear_stale_build_locks, extensions_root


def test_only_old_locks_are_removed_and_said(tmp_path, capsys):
    old = tmp_path / "py311_cpu" / "cpu_adam" / "lock"
    fresh = tmp_path / "py311_cpu" / "shm_comm" / "lock"
    flat = tmp_path / "fused_adam" / "lock"               # TORCH_EXTENSIONS_DIR holds the ops directly
    for lock in (old, fresh, flat):
        lock.parent.mkdir(parents=True)
        lock.write_text("")
    stale = time.time() - STALE_AFTER - 60
    os.utime(old, (stale, stale))
    os.utime(flat, (stale, stale))
    assert sorted(clear_stale_build_locks(tmp_path)) == sorted([old, flat])
    assert not old.exists() and not flat.exists() and fresh.exists()
    assert f"removed {old}" in capsys.readouterr().err
    assert (old.parent).is_dir()                            # the build itself is left alone


def test_other_local_ranks_leave_locks_to_rank_0(tmp_path, monkeypatch):
    lock = tmp_path / "cpu_adam" / "lock"
    lock.parent.mkdir()
    lock.write_text("")
    os.utime(lock, (0, 0))
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert clear_stale_build_locks(tmp_path) == [] and lock.exists()


def test_the_root_follows_torch_extensions_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path))
    assert extensions_root() == tmp_path
    assert clear_stale_build_locks() == []                  # nothing there: nothing done
