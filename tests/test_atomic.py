"""Atomic artifact writes: nothing half-written is published, and temp directories of killed writers are reclaimed."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from dtx.atomic import atomic_dir


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_killed_writers_temp_dir_is_removed_by_the_next_write(tmp_path):
    target = tmp_path / "engine"
    stale = tmp_path / f".engine.{_dead_pid()}.abc123.tmp"
    (stale / "big").mkdir(parents=True)
    (stale / "big" / "cross.onnx").write_bytes(b"\0" * 1024)
    live = tmp_path / f".engine.{os.getpid()}.inuse.tmp"  # a writer still at work: left alone
    live.mkdir()
    other = tmp_path / f".engine-2.{_dead_pid()}.x.tmp"  # another target's temp: not ours to judge by name prefix alone
    other.mkdir()
    with atomic_dir(target) as tmp:
        (tmp / "engine.json").write_text("{}")
    assert not stale.exists() and live.exists() and other.exists()
    assert (target / "engine.json").read_text() == "{}"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".engine.")] == [live.name]


def test_a_failed_write_publishes_nothing_and_cleans_up(tmp_path):
    target = tmp_path / "ckpt"
    with pytest.raises(RuntimeError):
        with atomic_dir(target) as tmp:
            (tmp / "half").write_text("x")
            raise RuntimeError("killed")
    assert not target.exists() and not list(tmp_path.iterdir())
