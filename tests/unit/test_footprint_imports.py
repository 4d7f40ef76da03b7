"""The daemon's idle footprint: pyroute2 without its package ``__init__``, the
built-in vault backends without ``importlib.metadata``, the start-up trim.

Each check runs in a fresh interpreter (the test process has imported
everything already)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from edgesec.memtrim import malloc_trim, settle


def _run(code: str) -> str:
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], check=True,
                         capture_output=True, text=True, timeout=120)
    return out.stdout.strip()


def test_links_imports_only_the_pyroute2_parts_it_uses() -> None:
    out = _run("""
        import sys
        import edgesec.net.links
        from edgesec.dhcp import dnsflush
        mods = [m for m in sys.modules if m.startswith("pyroute2")]
        print(len(mods), "pyroute2.ndb" in sys.modules, "pyroute2.ipdb" in sys.modules)
    """)
    count, ndb, ipdb = out.split()
    assert (ndb, ipdb) == ("False", "False")
    assert int(count) < 130  # the whole package is ~160 modules


def test_the_lazy_package_still_serves_every_public_name() -> None:
    out = _run("""
        import edgesec.net.links
        from pyroute2 import IPRoute, NDB, netns, Conntrack
        import pyroute2
        print(IPRoute.__name__, NDB.__name__, netns.__name__, Conntrack.__name__,
              pyroute2.__version__ != "unknown")
    """)
    assert out == "IPRoute NDB pyroute2.netns Conntrack True"


def test_a_full_pyroute2_imported_first_is_left_alone() -> None:
    out = _run("""
        import pyroute2
        import edgesec.net.links
        import sys
        print(type(sys.modules["pyroute2"]).__name__, sys.modules["pyroute2"] is pyroute2)
    """)
    assert out == "module True"


def test_builtin_vault_backend_loads_without_importlib_metadata() -> None:
    out = _run("""
        import sys
        from edgesec.crypt.backends import load_backend
        from edgesec.crypt.settings import CryptSettings
        print("importlib.metadata" in sys.modules,
              type(load_backend("passphrase", CryptSettings(), b"x")).__name__,
              "importlib.metadata" in sys.modules)
    """)
    assert out == "False PassphraseBackend False"


def test_settle_collects_freezes_and_trims() -> None:
    import gc

    before = gc.get_freeze_count()
    settle()
    assert gc.get_freeze_count() >= before
    assert isinstance(malloc_trim(), bool)
    gc.unfreeze()
