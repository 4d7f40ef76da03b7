"""Backend choice and the nft-binary backend's command lines (a stand-in nft script).

The stand-in records its arguments and stdin, so the test sees exactly what
edgesec would run; the real binary is exercised against the daemon in
tests/integration/test_fail_closed.py.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import pytest

from edgesec.net import nftbackend as B


def fake_nft(tmp_path: Path, rc: int = 0) -> Path:
    log = tmp_path / "calls.jsonl"
    script = tmp_path / "nft"
    script.write_text(f"""#!{sys.executable}
import json, sys
stdin = sys.stdin.read() if "-f" in sys.argv else ""
with open({str(log)!r}, "a") as fh:
    fh.write(json.dumps({{"argv": sys.argv[1:], "stdin": stdin}}) + "\\n")
print(json.dumps({{"nftables": []}}))
sys.exit({rc})
""")
    script.chmod(0o755)
    return script


def calls(tmp_path: Path) -> list[dict]:
    return [json.loads(line) for line in (tmp_path / "calls.jsonl").read_text().splitlines()]


def test_binary_backend_feeds_json_on_stdin_and_lists_with_j(tmp_path: Path) -> None:
    b = B.BinaryBackend(str(fake_nft(tmp_path)))
    doc = {"nftables": [{"add": {"table": {"family": "inet", "name": "t"}}}]}
    assert b.json_cmd(doc)[0] == 0
    assert b.cmd("list chains inet", terse=True)[0] == 0
    first, second = calls(tmp_path)
    assert first == {"argv": ["-j", "-f", "-"], "stdin": json.dumps(doc)}
    assert second["argv"] == ["-j", "-t", "list", "chains", "inet"]
    assert len(b.own_pids()) == 3  # this process and its two nft children


def test_missing_binary_is_an_error_not_a_crash(tmp_path: Path) -> None:
    rc, _out, err = B.BinaryBackend(str(tmp_path / "absent")).cmd("list tables")
    assert rc == 127 and "absent" in err
    with pytest.raises(B.NftUnavailable, match="absent"):
        B.open_backend("binary", str(tmp_path / "absent"))
    with pytest.raises(B.NftUnavailable, match="unknown nftables backend"):
        B.open_backend("iptables")


def test_auto_falls_back_to_the_binary_and_says_why(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setitem(sys.modules, "nftables", None)  # import nftables -> ImportError
    caplog.set_level(logging.INFO, "edgesec.net.nftbackend")
    backend = B.open_backend("auto", str(fake_nft(tmp_path)))
    assert backend.name == "binary"
    assert "because libnftables binding" in caplog.text


def test_neither_backend_names_both_reasons(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "nftables", None)
    with pytest.raises(B.NftUnavailable) as err:
        B.open_backend("auto", str(fake_nft(tmp_path, rc=1)))
    assert "libnftables binding" in str(err.value) and "nft binary" in str(err.value)


def test_env_knob_overrides_the_configured_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(B.NFT_BIN_ENV, "/from/env/nft")
    assert B.find_nft("/from/config/nft") == "/from/env/nft"
    monkeypatch.delenv(B.NFT_BIN_ENV)
    assert B.find_nft("/from/config/nft") == "/from/config/nft"
