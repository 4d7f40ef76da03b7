"""edgesec.atomic.write_atomic: the one durable file replacement."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from edgesec.atomic import write_atomic


def test_writes_text_and_bytes_with_the_mode_whatever_the_umask(tmp_path: Path) -> None:
    target = tmp_path / "hostapd.conf"
    old = os.umask(0o077)
    try:
        write_atomic(target, "ssid=x\n", 0o644)
    finally:
        os.umask(old)
    assert target.read_text() == "ssid=x\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    write_atomic(target, b"\x00secret", 0o600)
    assert target.read_bytes() == b"\x00secret"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hostapd.conf"]


def test_file_and_directory_are_fsynced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[str] = []
    real = os.fsync

    def fsync(fd: int) -> None:
        synced.append("dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file")
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    write_atomic(tmp_path / "f", "x")
    assert synced == ["file", "dir"]


def test_a_failed_write_leaves_the_old_file_and_no_temp(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "dnsmasq.conf"
    write_atomic(target, "old", 0o644)

    def broken(fd: int) -> None:
        raise OSError(5, "I/O error")

    monkeypatch.setattr(os, "fsync", broken)
    with pytest.raises(OSError):
        write_atomic(target, "new", 0o644)
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dnsmasq.conf"]


def test_missing_directory_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        write_atomic(tmp_path / "absent" / "f", "x")
