"""Supervisor commands for containment: QUARANTINE, RELEASE, GET_QUARANTINE.

``QUARANTINE <mac> [reason] [seconds]`` contains a known device (DHCP and DNS
to the gateway only) until ``RELEASE <mac>`` or, with ``seconds``, until it
expires; ``OK`` means the quarantine is on disk and in the firewall.
``GET_QUARANTINE`` lists ``mac,reason,source,created,expires`` lines.
Events: ``QUARANTINE <mac> on|off <reason>``.
"""

from __future__ import annotations

from edgesec.registry import Registry
from edgesec.supervisor import protocol as proto
from edgesec.supervisor.commands import CommandError, CommandTable, Request

MAX_TTL_S = 365 * 86400


def _ttl(text: str) -> int:
    if not (text.isascii() and text.isdigit()) or not 0 < int(text) <= MAX_TTL_S:
        raise CommandError(f"invalid quarantine lifetime {text!r} (1..{MAX_TTL_S} seconds)")
    return int(text)


class QuarantineCommands:
    """Handlers over a :class:`Registry` (the same path the detectors use)."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry

    def install(self, table: CommandTable) -> None:
        table.register("QUARANTINE", self.quarantine, (1, 2, 3))
        table.register("RELEASE", self.release, (1, 2))
        table.register("GET_QUARANTINE", self.list, (0,))

    def quarantine(self, q: Request) -> str:
        reason = q.args[1] if len(q.args) > 1 else "manual"
        ttl = _ttl(q.args[2]) if len(q.args) > 2 else 0
        self.registry.quarantine(q.args[0], reason, source="supervisor", ttl=ttl)
        return proto.OK

    def release(self, q: Request) -> str:
        reason = q.args[1] if len(q.args) > 1 else "released"
        self.registry.release(q.args[0], reason, source="supervisor")
        return proto.OK

    def list(self, _q: Request) -> str:
        lines = [f"{r.mac},{r.reason},{r.source},{r.created},{r.expires}\n"
                 for r in self.registry.quarantines()]
        return "".join(lines) or proto.OK
