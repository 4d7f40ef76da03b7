"""Benchmark of the vault: PUT/GET per second directly (passphrase and SoftHSM2
backends) and through the running daemon's supervisor socket, plus unlock time.

    .venv/bin/python bench/crypt.py [--puts N] [--gets N] [--no-hsm] [--no-supervisor]

Every PUT is a committed SQLite transaction (WAL, synchronous=FULL, fsync).
Prints each figure and ratios against peers measured in the same run.
"""

from __future__ import annotations

import argparse
import base64
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from edgesec.crypt import CryptSettings, Vault  # noqa: E402
from edgesec.crypt.backends.passphrase import PassphraseBackend  # noqa: E402
from edgesec.crypt.backends.pkcs11 import Pkcs11Backend  # noqa: E402
from edgesec.crypt.settings import DEFAULT_KDF_LOG_N  # noqa: E402
from edgesec.crypt.softhsm import make_token  # noqa: E402

VALUE = os.urandom(64)


def rate(n: int, fn, rounds: int = 3) -> float:  # type: ignore[no-untyped-def]
    """Operations per second: median over ``rounds`` slices (the host is shared)."""
    per = max(1, n // rounds)
    rates = []
    for r in range(rounds):
        start = time.perf_counter()
        for i in range(r * per, (r + 1) * per):
            fn(i)
        rates.append(per / (time.perf_counter() - start))
    return statistics.median(rates)


def direct(vault: Vault, puts: int, gets: int) -> tuple[float, float]:
    rate(100, lambda i: vault.put(f"warm{i}", VALUE))  # warm the page cache and the WAL
    put = rate(puts, lambda i: vault.put(f"k{i}", VALUE))
    get = rate(gets, lambda i: vault.get(f"k{i % (puts // 3 * 3)}"))
    return put, get


def unlock_times(path: Path, backend_factory, runs: int = 3) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        Vault.open(path, backend_factory()).close()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def supervisor(workdir: Path, puts: int, gets: int) -> tuple[float, float]:
    sys.path.insert(0, str(ROOT / "tests"))
    from daemon import Daemon, write_config
    from edgesec.supervisor.client import SupervisorClient

    os.environ["EDGESEC_CRYPT_PASSPHRASE"] = "bench-pass"
    workdir.mkdir(parents=True, exist_ok=True)
    cfg = write_config(workdir)
    value = base64.urlsafe_b64encode(VALUE).decode().rstrip("=")
    with Daemon(cfg, verbosity=0) as d, SupervisorClient(unix_path=d.socket_path) as c:
        rate(100, lambda i: c.request(f"PUT_CRYPT warm{i} {value}"))

        def put(i: int) -> None:
            assert c.request(f"PUT_CRYPT k{i} {value}") == "OK\n"

        def get(i: int) -> None:
            assert c.request(f"GET_CRYPT k{i % (puts // 3 * 3)}") == value + "\n"

        return rate(puts, put), rate(gets, get)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--puts", type=int, default=1000)
    ap.add_argument("--gets", type=int, default=5000)
    ap.add_argument("--no-hsm", action="store_true")
    ap.add_argument("--no-supervisor", action="store_true")
    args = ap.parse_args()
    settings = CryptSettings(kdf_log_n=DEFAULT_KDF_LOG_N)

    with tempfile.TemporaryDirectory(prefix="bench-crypt-") as tmp:
        work = Path(tmp)
        print(f"vault benchmark: {args.puts} PUTs, {args.gets} GETs of {len(VALUE)}-byte values")

        pp_path = work / "pass.db"
        start = time.perf_counter()
        vault = Vault.create(pp_path, PassphraseBackend(settings, b"bench-pass"))
        print(f"  create (scrypt N=2^{settings.kdf_log_n}, r=8, p=1): "
              f"{time.perf_counter() - start:.3f} s")
        p_put, p_get = direct(vault, args.puts, args.gets)
        vault.close()
        p_unlock = unlock_times(pp_path, lambda: PassphraseBackend(settings, b"bench-pass"))
        ok = "within" if 0.2 <= p_unlock <= 1.0 else "OUTSIDE"
        print(f"  passphrase unlock (KDF): {p_unlock:.3f} s median of 3 ({ok} the 0.2-1 s design)")
        print(f"  direct, passphrase: PUT {p_put:8.0f}/s   GET {p_get:8.0f}/s")

        if not args.no_hsm:
            token = make_token(work / "hsm", label="bench", pin="1234")
            os.environ["SOFTHSM2_CONF"] = str(token.conf)
            hs = CryptSettings(backend="pkcs11", pkcs11_token="bench", pkcs11_key_label="bench")
            h_path = work / "hsm.db"
            vault = Vault.create(h_path, Pkcs11Backend(hs, b"1234"))
            h_put, h_get = direct(vault, args.puts, args.gets)
            root = vault._root_key()
            blob = root.wrap(os.urandom(32), b"aad")
            unwraps = rate(500, lambda _i: root.unwrap(blob, b"aad"))
            vault.close()
            h_unlock = unlock_times(h_path, lambda: Pkcs11Backend(hs, b"1234"))
            print(f"  softhsm2 unlock: {h_unlock:.3f} s median of 3 "
                  f"(passphrase/softhsm {p_unlock / h_unlock:.1f}x)")
            print(f"  direct, softhsm2:   PUT {h_put:8.0f}/s   GET {h_get:8.0f}/s   "
                  f"(token AES-GCM unwraps {unwraps:.0f}/s)")
            print(f"  ratio softhsm2/passphrase: PUT {h_put / p_put:.2f}x  GET {h_get / p_get:.2f}x"
                  "  (data keys are unwrapped once at unlock; values never touch the token)")

        if not args.no_supervisor:
            s_put, s_get = supervisor(work / "daemon", args.puts, args.gets)
            print(f"  supervisor socket:  PUT {s_put:8.0f}/s   GET {s_get:8.0f}/s")
            print(f"  ratio supervisor/direct: PUT {s_put / p_put:.2f}x  GET {s_get / p_get:.2f}x")


if __name__ == "__main__":
    main()
