"""Log output of ``edgesec run``: plain text, JSON lines, or journald-friendly.

* ``text`` (default): ``<time> <LEVEL> <logger>: <message>`` on stderr.
* Under systemd (stderr is the stream ``JOURNAL_STREAM`` names) the time is
  left out (journald stamps each line) and each line starts with its syslog
  priority, ``<6>`` for INFO, ``<4>`` for WARNING..., so ``journalctl -p``
  filters work.
* ``json``: one object per line: ``ts`` (ISO 8601 UTC), ``level``, ``logger``,
  ``msg``, and the structured fields a record carries (``audit``: the
  command, MAC, peer pid/uid or address of an audit line).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import sys
from typing import Any

FORMATS = ("text", "json")
AUDIT_LOGGER = "edgesec.audit"  # policy changes, leases, RADIUS decisions
# syslog priorities (RFC 5424) by Python level
_PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3,
             logging.CRITICAL: 2}


def syslog_priority(levelno: int) -> int:
    for level in (logging.CRITICAL, logging.ERROR, logging.WARNING, logging.INFO):
        if levelno >= level:
            return _PRIORITY[level]
    return 7


class JournalFormatter(logging.Formatter):
    """``<6>edgesec.audit: message``: no time (the journal has it), a priority prefix."""

    def format(self, record: logging.LogRecord) -> str:
        text = f"<{syslog_priority(record.levelno)}>{record.name}: {record.getMessage()}"
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


class JsonFormatter(logging.Formatter):
    """One JSON object per line."""

    def __init__(self, journal: bool = False) -> None:
        super().__init__()
        self.journal = journal

    def format(self, record: logging.LogRecord) -> str:
        obj: dict[str, Any] = {
            "ts": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(
                timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        audit = getattr(record, "audit", None)
        if isinstance(audit, dict):
            obj["audit"] = audit
        if record.exc_info:
            obj["exc"] = self.formatException(record.exc_info)
        text = json.dumps(obj, default=str, ensure_ascii=False)
        return f"<{syslog_priority(record.levelno)}>{text}" if self.journal else text


def under_journal(environ: dict[str, str] | None = None, fd: int = 2) -> bool:
    """True when ``fd`` (stderr) is the systemd journal stream.

    systemd sets ``JOURNAL_STREAM=<device>:<inode>`` of the stream it connected;
    a child whose stderr was redirected elsewhere inherits the variable, so the
    stream itself is compared (systemd.exec(5)).
    """
    value = (os.environ if environ is None else environ).get("JOURNAL_STREAM", "")
    dev, sep, ino = value.partition(":")
    if not sep:
        return False
    try:
        st = os.fstat(fd)
        return (st.st_dev, st.st_ino) == (int(dev), int(ino))
    except (OSError, ValueError):
        return False


def setup_logging(level: int, log_format: str = "text") -> None:
    """Configure the root logger on stderr for ``edgesec run``."""
    if log_format not in FORMATS:
        raise ValueError(f"--log-format must be one of {', '.join(FORMATS)}")
    journal = under_journal()
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(JsonFormatter(journal))
    elif journal:
        handler.setFormatter(JournalFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    from edgesec.ratelog import install

    install()  # nothing a device or client repeats can flood the log
    # The audit trail is shown at every verbosity (it is INFO, the default is WARNING).
    logging.getLogger(AUDIT_LOGGER).setLevel(min(level, logging.INFO))
