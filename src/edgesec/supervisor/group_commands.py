"""Supervisor commands for groups and one-way access (additive to the original's set).

``ADD_GROUP_MEMBER <group> <mac>``, ``REMOVE_GROUP_MEMBER <group> <mac>``,
``GET_GROUPS`` (``group,mac`` lines), ``ADD_ACCESS <from> <to> [<proto>/<port>]``,
``REMOVE_ACCESS`` (same arguments), ``GET_ACCESS`` (``from,to,service`` lines,
service ``tcp/80``, ``udp/53`` or ``any``). Replies follow the original's
style: ``OK`` after the change committed, ``FAIL`` (reason logged) for an
unknown MAC, a bad group name or service, or a membership/rule that already
exists (add) or does not exist (remove); a refused request changes nothing.
"""

from __future__ import annotations

from edgesec.groups import Access, GroupPolicy, parse_service
from edgesec.supervisor import protocol as proto
from edgesec.supervisor.commands import CommandTable, Request


def format_memberships(rows: list[tuple[str, str]]) -> str:
    return "".join(f"{g},{m}\n" for g, m in rows) or proto.OK


def format_access(rules: list[Access]) -> str:
    return "".join(f"{r.src},{r.dst},{r.service}\n" for r in rules) or proto.OK


class GroupCommands:
    """The group and access commands over ``registry.groups``."""

    def __init__(self, groups: GroupPolicy) -> None:
        self.groups = groups

    def install(self, table: CommandTable) -> None:
        g = self.groups
        table.register("ADD_GROUP_MEMBER", self.add_member, (2,))
        table.register("REMOVE_GROUP_MEMBER", self.remove_member, (2,))
        table.register("GET_GROUPS", lambda _: format_memberships(g.memberships()), (0,))
        table.register("ADD_ACCESS", self.add_access, (2, 3))
        table.register("REMOVE_ACCESS", self.remove_access, (2, 3))
        table.register("GET_ACCESS", lambda _: format_access(g.rules()), (0,))

    def add_member(self, q: Request) -> str:
        self.groups.add_member(q.args[0], q.args[1])
        return proto.OK

    def remove_member(self, q: Request) -> str:
        self.groups.remove_member(q.args[0], q.args[1])
        return proto.OK

    @staticmethod
    def _rule_args(q: Request) -> tuple[str, str, str, int]:
        src, dst = q.args[0], q.args[1]
        service = parse_service(q.args[2]) if len(q.args) == 3 else ("", 0)
        return src, dst, *service

    def add_access(self, q: Request) -> str:
        self.groups.add_access(*self._rule_args(q))
        return proto.OK

    def remove_access(self, q: Request) -> str:
        self.groups.remove_access(*self._rule_args(q))
        return proto.OK
