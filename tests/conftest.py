"""Suite-wide rules.

* Tests under tests/integration/ are marked ``integration`` automatically.
* With ``CI=true`` a skipped integration test is a failure: CI runs as root
  with every Debian package installed, so a skip there means something is
  missing, not that the test does not apply.
* Hypothesis runs fewer examples in CI (profile ``ci``) to keep the suite fast.
* The inner loop, ``pytest tests/unit -m "not slow"``, deselects the fuzzers
  (any test named ``*fuzz*`` is marked ``slow``, as are tests marked by hand:
  subprocess round trips, thousand-device floods) and runs the remaining
  property tests with at most 20 examples (profile ``quick``, and a test's own
  ``@settings(max_examples=...)`` capped). CI runs everything.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile("ci", max_examples=150, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", max_examples=100, deadline=None)
settings.register_profile("quick", max_examples=20, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("ci" if os.environ.get("CI") == "true" else "dev")

IN_CI = os.environ.get("CI") == "true"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/integration/" in str(item.fspath).replace(os.sep, "/"):
            item.add_marker(pytest.mark.integration)
        if "fuzz" in item.name:
            item.add_marker(pytest.mark.slow)
        if QUICK_EXAMPLES in _quick:
            _cap_examples(item)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    outcome = yield
    report = outcome.get_result()
    if IN_CI and report.skipped and item.get_closest_marker("integration") is not None:
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = f"integration test skipped under CI=true (not allowed): {reason}"


QUICK_EXAMPLES = 20
_quick: set[int] = set()


def _cap_examples(item: pytest.Item) -> None:
    """In the inner loop, a test's own ``@settings(max_examples=N)`` is capped too."""
    test = getattr(item, "obj", None)
    own = getattr(test, "_hypothesis_internal_use_settings", None)
    if own is not None and own.max_examples > QUICK_EXAMPLES:
        test._hypothesis_internal_use_settings = settings(  # type: ignore[union-attr]
            own, max_examples=QUICK_EXAMPLES)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slow: takes more than a few seconds")
    if "not slow" in (config.option.markexpr or "") and not IN_CI:
        settings.load_profile("quick")
        _quick.add(QUICK_EXAMPLES)
