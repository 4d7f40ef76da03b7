"""Benchmark of the vault: PUT/GET per second directly (passphrase and SoftHSM2
backends) and through the running daemon's supervisor socket, plus unlock time.

    .venv/bin/python bench/crypt.py [--puts N] [--gets N] [--rounds R]
                                    [--no-hsm] [--no-supervisor]

Every PUT is a committed SQLite transaction (WAL, synchronous=FULL, fsync).
The peers are measured in interleaved slices (round-robin, median per peer) so
that the ratios stay fair on a shared, noisy host; the load average is printed.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from edgesec.crypt import CryptSettings, Vault  # noqa: E402
from edgesec.crypt.backends.passphrase import PassphraseBackend, derive  # noqa: E402
from edgesec.crypt.backends.pkcs11 import Pkcs11Backend  # noqa: E402
from edgesec.crypt.settings import DEFAULT_KDF_LOG_N  # noqa: E402
from edgesec.crypt.softhsm import make_token  # noqa: E402

VALUE = os.urandom(64)
B64VALUE = base64.urlsafe_b64encode(VALUE).decode().rstrip("=")
Op = Callable[[int], object]


def interleaved(peers: dict[str, Op], n: int, rounds: int) -> dict[str, float]:
    """Ops/s per peer: ``rounds`` slices of n/rounds ops each, round-robin with a
    rotating start (no peer always goes first), median per peer."""
    per = max(1, n // rounds)
    rates: dict[str, list[float]] = {name: [] for name in peers}
    order = list(peers.items())
    for r in range(rounds):
        shift = r % len(order)
        for name, op in order[shift:] + order[:shift]:
            start = time.perf_counter()
            for i in range(r * per, (r + 1) * per):
                op(i)
            rates[name].append(per / (time.perf_counter() - start))
    return {name: statistics.median(v) for name, v in rates.items()}


def unlock_time(path: Path, factory: Callable[[], object], runs: int = 3) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        Vault.open(path, factory()).close()  # type: ignore[arg-type]
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def vault_ops(vault: Vault, written: int) -> tuple[Op, Op]:
    return (lambda i: vault.put(f"k{i}", VALUE)), (lambda i: vault.get(f"k{i % written}"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--puts", type=int, default=1200)
    ap.add_argument("--gets", type=int, default=6000)
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--no-hsm", action="store_true")
    ap.add_argument("--no-supervisor", action="store_true")
    args = ap.parse_args()
    written = args.puts // args.rounds * args.rounds
    settings = CryptSettings(kdf_log_n=DEFAULT_KDF_LOG_N)
    print(f"vault benchmark: {args.puts} PUTs, {args.gets} GETs of {len(VALUE)}-byte values, "
          f"{args.rounds} interleaved rounds; load average {os.getloadavg()[0]:.1f} "
          f"on {os.cpu_count()} CPUs")

    with tempfile.TemporaryDirectory(prefix="bench-crypt-") as tmp, \
            contextlib.ExitStack() as stack:
        work = Path(tmp)
        puts: dict[str, Op] = {}
        gets: dict[str, Op] = {}

        pp_path = work / "pass.db"
        start = time.perf_counter()
        Vault.create(pp_path, PassphraseBackend(settings, b"bench-pass")).close()
        create_s = time.perf_counter() - start
        p_unlock = unlock_time(pp_path, lambda: PassphraseBackend(settings, b"bench-pass"))
        cpu = []
        for _ in range(3):
            c0 = time.process_time()
            derive(b"bench-pass", os.urandom(16), settings.kdf_log_n)
            cpu.append(time.process_time() - c0)
        kdf_cpu = statistics.median(cpu)
        inside = "within" if 0.2 <= kdf_cpu <= 1.0 else "OUTSIDE"
        print(f"  passphrase create: {create_s:.3f} s; unlock (scrypt N=2^{settings.kdf_log_n}, "
              f"r=8, p=1): {p_unlock:.3f} s wall, KDF {kdf_cpu:.3f} s CPU, medians of 3 "
              f"(CPU cost {inside} the 0.2-1 s design; wall grows with host load)")
        pv = stack.enter_context(Vault.open(pp_path, PassphraseBackend(settings, b"bench-pass")))
        puts["direct/passphrase"], gets["direct/passphrase"] = vault_ops(pv, written)

        if not args.no_hsm:
            token = make_token(work / "hsm", label="bench", pin="1234")
            os.environ["SOFTHSM2_CONF"] = str(token.conf)
            hs = CryptSettings(backend="pkcs11", pkcs11_token="bench", pkcs11_key_label="bench")
            h_path = work / "hsm.db"
            Vault.create(h_path, Pkcs11Backend(hs, b"1234")).close()
            h_unlock = unlock_time(h_path, lambda: Pkcs11Backend(hs, b"1234"))
            hv = stack.enter_context(Vault.open(h_path, Pkcs11Backend(hs, b"1234")))
            root = hv._root_key()
            blob = root.wrap(os.urandom(32), b"aad")
            unwrap = interleaved({"u": lambda _i: root.unwrap(blob, b"aad")}, 600, 3)["u"]
            print(f"  softhsm2 unlock: {h_unlock:.4f} s median of 3 "
                  f"(passphrase/softhsm2 {p_unlock / h_unlock:.0f}x); "
                  f"token AES-GCM unwrap {unwrap:.0f}/s")
            puts["direct/softhsm2"], gets["direct/softhsm2"] = vault_ops(hv, written)

        if not args.no_supervisor:
            sys.path.insert(0, str(ROOT / "tests"))
            from daemon import Daemon, write_config
            from edgesec.supervisor.client import SupervisorClient

            os.environ["EDGESEC_CRYPT_PASSPHRASE"] = "bench-pass"
            (work / "daemon").mkdir()
            daemon = stack.enter_context(Daemon(write_config(work / "daemon"), verbosity=0))
            client = stack.enter_context(SupervisorClient(unix_path=daemon.socket_path))

            def sput(i: int) -> None:
                assert client.request(f"PUT_CRYPT k{i} {B64VALUE}") == "OK\n"

            def sget(i: int) -> None:
                assert client.request(f"GET_CRYPT k{i % written}") == B64VALUE + "\n"

            puts["supervisor/passphrase"], gets["supervisor/passphrase"] = sput, sget

        for op in puts.values():  # warm-up: page cache, WAL, sockets
            for i in range(50):
                op(written + i)
        put_rates = interleaved(puts, args.puts, args.rounds)
        get_rates = interleaved(gets, args.gets, args.rounds)
        for name in puts:
            print(f"  {name:24s} PUT {put_rates[name]:8.0f}/s   GET {get_rates[name]:8.0f}/s")
        base = "direct/passphrase"
        for name in puts:
            if name != base:
                print(f"  ratio {name} / {base}: PUT {put_rates[name] / put_rates[base]:.2f}x"
                      f"  GET {get_rates[name] / get_rates[base]:.2f}x")
        if "direct/softhsm2" in puts:
            print("  (softhsm2 unwraps data keys once at unlock; values never touch the token)")


if __name__ == "__main__":
    main()
