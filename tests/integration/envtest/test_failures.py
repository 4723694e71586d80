"""A control plane that cannot start fails fast, says why, and leaves nothing running.

These use stand-in shell scripts for the binaries where the real ones cannot be
made to fail on demand, so they run without the Go build (openssl is enough),
except the one that needs a real etcd to get as far as the apiserver.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

from devservices import envtest
from devservices.envtest import MissingBinaryError, start_control_plane
from devservices.process import ServiceError
from devservices.pytest_require import require_binary


def write_script(path: Path, body: str) -> None:
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)


def fake_assets(folder: Path, etcd: str, apiserver: str) -> Path:
    folder.mkdir()
    write_script(folder / "etcd", etcd)
    write_script(folder / "kube-apiserver", apiserver)
    write_script(folder / "kubectl", "exit 0")
    return folder


def processes_mentioning(text: str) -> list[int]:
    """Pids whose command line contains ``text`` (our unique tmp path), zombies excluded."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if text in cmdline and state != "Z" and int(entry.name) != os.getpid():
            pids.append(int(entry.name))
    return pids


def test_missing_binary_is_named(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(MissingBinaryError) as info:
        start_control_plane(tmp_path / "work", tmp_path / "empty")
    assert info.value.binary == "etcd"
    assert "scripts/build-envtest.sh" in str(info.value)


def test_etcd_that_exits_reports_command_and_log(tmp_path: Path) -> None:
    assets = fake_assets(
        tmp_path / "assets", etcd="echo 'etcd: cannot access data directory' >&2; exit 3", apiserver="exit 0"
    )
    with pytest.raises(ServiceError) as info:
        start_control_plane(tmp_path / "work", assets)
    message = str(info.value)
    assert "etcd exited with code 3" in message
    assert f"{assets / 'etcd'} --name=envtest --data-dir=" in message
    assert "cannot access data directory" in message


def test_etcd_that_hangs_times_out_and_is_stopped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(envtest, "START_TIMEOUT_S", 2.0)
    assets = fake_assets(tmp_path / "assets", etcd='[ "$1" = --help ] && exit 0; exec sleep 300', apiserver="exit 0")
    started = time.monotonic()
    with pytest.raises(ServiceError) as info:
        start_control_plane(tmp_path / "work", assets)
    assert time.monotonic() - started < 30
    assert "etcd was not ready after 2s" in str(info.value)
    assert processes_mentioning(str(tmp_path)) == []


def test_apiserver_failure_names_it_and_stops_etcd(tmp_path: Path) -> None:
    real_etcd = envtest.binary_path("etcd", envtest.assets_dir())
    if not os.access(real_etcd, os.X_OK):
        real_etcd = Path(shutil.which("etcd") or "/nonexistent")
    require_binary(real_etcd, "`make deps` (scripts/build-envtest.sh) builds etcd")
    assets = fake_assets(tmp_path / "assets", etcd="", apiserver="echo 'Error: unknown flag: --frobnicate' >&2; exit 1")
    (assets / "etcd").unlink()
    (assets / "etcd").symlink_to(real_etcd)
    with pytest.raises(ServiceError) as info:
        start_control_plane(tmp_path / "work", assets)
    message = str(info.value)
    assert "kube-apiserver exited with code 1" in message
    assert "--authorization-mode=RBAC" in message
    assert "unknown flag: --frobnicate" in message
    # etcd was started first (its data dir is under tmp_path) and must be gone again.
    assert processes_mentioning(str(tmp_path)) == []
