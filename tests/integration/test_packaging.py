"""`make install` into a DESTDIR: the layout, a working `edgesec`, the systemd unit
(`systemd-analyze verify` and its security exposure), completion, man page, and a
config that is never overwritten."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
VENV = "usr/local/lib/edgesec/venv"
# systemd-analyze security: 0 (best) .. 10; "OK" ends below 5.  Ours is 3.4 on systemd 252.
MAX_EXPOSURE = 4.5

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="make install runs as root (deps)")


def make(*args: str, dest: Path) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(["make", "-C", str(ROOT), *args, f"DESTDIR={dest}"],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return res


@pytest.fixture(scope="module")
def dest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    dest = tmp_path_factory.mktemp("destdir")
    make("install", dest=dest)
    return dest


def test_layout_and_installed_edgesec_runs(dest: Path) -> None:
    link = dest / "usr/local/bin/edgesec"
    assert os.readlink(link) == f"/{VENV}/bin/edgesec"  # the final path, not the staging one
    script = dest / VENV / "bin/edgesec"
    assert script.read_text().startswith(f"#!/{VENV}/bin/python\n")
    res = subprocess.run([str(dest / VENV / "bin/python"), str(script), "--help"],
                         capture_output=True, text=True, timeout=60, cwd="/")
    assert res.returncode == 0 and "run" in res.stdout and "ctl" in res.stdout, res
    assert (dest / "var/lib/edgesec").stat().st_mode & 0o777 == 0o750
    conf = dest / "etc/edgesec/config.ini"
    assert conf.read_text() == (ROOT / "packaging/config.ini").read_text()
    assert conf.stat().st_mode & 0o777 == 0o640
    secret = dest / "etc/edgesec/vault-passphrase"
    assert secret.stat().st_mode & 0o777 == 0o600 and len(secret.read_text().strip()) >= 32


def test_existing_config_is_never_overwritten(dest: Path) -> None:
    conf = dest / "etc/edgesec/config.ini"
    secret = dest / "etc/edgesec/vault-passphrase"
    conf.write_text(conf.read_text() + "; local change\n")
    before = secret.read_text()
    out = make("install-config", dest=dest).stdout
    assert "keeping" in out and conf.read_text().endswith("; local change\n")
    assert secret.read_text() == before


def test_unit_verifies_and_is_sandboxed(dest: Path, tmp_path: Path) -> None:
    unit = (dest / "etc/systemd/system/edgesec.service").read_text()
    assert "ExecStart=/usr/local/bin/edgesec run -c /etc/edgesec/config.ini" in unit
    assert "LoadCredential=edgesec-crypt-passphrase:/etc/edgesec/vault-passphrase" in unit
    assert "@" not in re.sub(r"^#.*$|@system-service", "", unit, flags=re.M)
    # verify wants ExecStart's binary to exist: point it at the staged copy
    staged = tmp_path / "edgesec.service"
    staged.write_text(unit.replace("ExecStart=/usr/local/bin/edgesec",
                                   f"ExecStart={dest / VENV / 'bin/edgesec'}"))
    res = subprocess.run(["systemd-analyze", "verify", "--man=no", str(staged)],
                         capture_output=True, text=True, timeout=120)
    ours = [ln for ln in res.stderr.splitlines() if "edgesec" in ln]
    assert res.returncode == 0 and not ours, res.stderr
    res = subprocess.run(["systemd-analyze", "security", "--offline=yes", str(staged)],
                         capture_output=True, text=True, timeout=120)
    m = re.search(r"Overall exposure level for edgesec.service: ([\d.]+)", res.stdout)
    assert m, res.stdout[-2000:] + res.stderr
    print(f"systemd-analyze security exposure: {m.group(1)}")
    assert float(m.group(1)) <= MAX_EXPOSURE


def test_completion_and_man_page(dest: Path) -> None:
    comp = (dest / "usr/local/share/bash-completion/completions/edgesec").read_text()
    assert "complete -o default -F _edgesec_completion edgesec" in comp
    env = {**os.environ, "COMP_WORDS": "edgesec ru", "COMP_CWORD": "1",
           "_EDGESEC_COMPLETE": "complete_bash"}
    res = subprocess.run([str(dest / VENV / "bin/python"), str(dest / VENV / "bin/edgesec")],
                         capture_output=True, text=True, env=env, timeout=60)
    assert res.stdout.split() == ["run"], res
    page = dest / "usr/local/share/man/man8/edgesec.8"
    if shutil.which("man") is None:
        pytest.fail("man is not installed")
    res = subprocess.run(["man", "-l", str(page)], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "MANPAGER": "cat", "MANWIDTH": "100"})
    assert res.returncode == 0, res.stderr
    assert "edgesec run [OPTIONS]" in res.stdout and "SIGHUP" in res.stdout
    assert "edgesec ctl" in res.stdout and "edgesec config check" in res.stdout
