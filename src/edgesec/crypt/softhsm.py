"""Throwaway SoftHSM2 tokens for tests, benchmarks and the lab.

``make_token(base_dir, label, pin)`` writes a ``softhsm2.conf`` whose token
directory lives under ``base_dir`` and initialises a token there with
``softhsm2-util``.  The caller exports ``SOFTHSM2_CONF`` (before the PKCS#11
library is first loaded in the process) to use it.
"""

from __future__ import annotations

import os
import secrets
import subprocess
from dataclasses import dataclass
from pathlib import Path

from edgesec.crypt.settings import DEFAULT_PKCS11_MODULE


@dataclass(frozen=True, slots=True)
class SoftHsmToken:
    """Where a test token lives and how to log in."""

    conf: Path
    label: str
    pin: str
    module: Path = DEFAULT_PKCS11_MODULE


def write_conf(base_dir: Path) -> Path:
    """Create ``base_dir/tokens`` and ``base_dir/softhsm2.conf``; returns the conf path."""
    tokens = base_dir / "tokens"
    tokens.mkdir(parents=True, exist_ok=True, mode=0o700)
    conf = base_dir / "softhsm2.conf"
    conf.write_text(
        f"directories.tokendir = {tokens}\nobjectstore.backend = file\nlog.level = ERROR\n"
    )
    return conf


def init_token(conf: Path, label: str, pin: str) -> None:
    """Initialise a fresh token labelled ``label`` in the conf's token directory."""
    env = {**os.environ, "SOFTHSM2_CONF": str(conf)}
    subprocess.run(
        ["softhsm2-util", "--init-token", "--free", "--label", label,
         "--pin", pin, "--so-pin", secrets.token_hex(8)],
        env=env, check=True, capture_output=True, text=True, timeout=60,
    )


def make_token(base_dir: Path, label: str = "edgesec", pin: str | None = None) -> SoftHsmToken:
    """Conf + one initialised token; the PIN is random unless given."""
    conf = write_conf(base_dir)
    pin = pin or secrets.token_hex(8)
    init_token(conf, label, pin)
    return SoftHsmToken(conf=conf, label=label, pin=pin)
