"""The supervisor's rate-limited logs: :mod:`edgesec.ratelog` (kept here for imports)."""

from __future__ import annotations

from edgesec.ratelog import LOG_BURST, LOG_WINDOW_S, RateLimitedLog

__all__ = ["LOG_BURST", "LOG_WINDOW_S", "RateLimitedLog"]
