"""Ruleset notifications: datagrams fold into commits; the watcher filters and coalesces.

The parser is pure and fuzzed with hypothesis (arbitrary bytes never raise);
messages are built here byte by byte the way the kernel sends them
(nlmsghdr, nfgenmsg, attributes; the generation id and pid big-endian).
"""

from __future__ import annotations

import struct

from hypothesis import given
from hypothesis import strategies as st

from edgesec.net.nftgen import (
    NFPROTO_INET,
    Commit,
    NotificationParser,
    RulesetWatcher,
)

NFT = 10 << 8  # NFNL_SUBSYS_NFTABLES
DELTABLE, NEWCHAIN, DELSETELEM, NEWGEN = 2, 3, 14, 15


def attr(atype: int, payload: bytes) -> bytes:
    raw = struct.pack("=HH", 4 + len(payload), atype) + payload
    return raw + b"\0" * (-len(raw) % 4)


def msg(mtype: int, family: int, *attrs: bytes) -> bytes:
    body = struct.pack("=BBH", family, 0, 0) + b"".join(attrs)
    return struct.pack("=IHHII", 16 + len(body), mtype, 0, 0, 0) + body


def table_msg(kind: int, table: str, family: int = NFPROTO_INET) -> bytes:
    return msg(NFT | kind, family, attr(1, table.encode() + b"\0"))


def gen_msg(gen: int, pid: int) -> bytes:
    return msg(NFT | NEWGEN, 0, attr(1, gen.to_bytes(4, "big")), attr(2, pid.to_bytes(4, "big")),
               attr(3, b"nft\0"))


def test_flush_ruleset_is_one_commit_deleting_both_tables() -> None:
    data = (table_msg(DELTABLE, "edgesec") + table_msg(DELTABLE, "edgesec_mdns")
            + gen_msg(42, 1234))
    (commit,) = NotificationParser().feed(data)
    both = frozenset({(NFPROTO_INET, "edgesec"), (NFPROTO_INET, "edgesec_mdns")})
    assert commit == Commit(42, 1234, both, both)


def test_a_commit_split_over_datagrams_and_other_subsystems_ignored() -> None:
    p = NotificationParser()
    other = msg((3 << 8) | DELTABLE, NFPROTO_INET, attr(1, b"edgesec\0"))  # not nftables
    assert p.feed(other + table_msg(DELSETELEM, "edgesec")) == []
    assert p.feed(table_msg(NEWCHAIN, "other", family=2)) == []
    (commit,) = p.feed(gen_msg(7, 99))
    assert commit.touched == {(NFPROTO_INET, "edgesec"), (2, "other")}
    assert commit.deleted == frozenset()
    (empty,) = p.feed(gen_msg(8, 99))  # state was reset by the previous NEWGEN
    assert empty.touched == frozenset()


@given(st.binary(max_size=512))
def test_fuzz_arbitrary_datagrams_never_raise(data: bytes) -> None:
    for commit in NotificationParser().feed(data):
        assert isinstance(commit, Commit)


@given(st.lists(st.sampled_from([table_msg(DELTABLE, "edgesec"), gen_msg(1, 2),
                                 table_msg(NEWCHAIN, "x" * 40)]), max_size=10),
       st.integers(0, 64))
def test_fuzz_truncated_valid_streams_never_raise(parts: list[bytes], cut: int) -> None:
    data = b"".join(parts)
    NotificationParser().feed(data[:max(0, len(data) - cut)])


class FakeMonitor:
    def __init__(self, batches: list[tuple[list[Commit], bool]]) -> None:
        self.batches = batches

    def read(self) -> tuple[list[Commit], bool]:
        return self.batches.pop(0)


def _watcher(calls: list[Commit | None], own: set[int]) -> RulesetWatcher:
    return RulesetWatcher({(NFPROTO_INET, "edgesec")}, calls.append, lambda: own)


def test_watcher_ignores_own_and_unrelated_commits_and_coalesces_the_rest() -> None:
    calls: list[Commit | None] = []
    w = _watcher(calls, {100, 101})
    mine = frozenset({(NFPROTO_INET, "edgesec")})
    w._monitor = FakeMonitor([  # type: ignore[assignment]
        ([Commit(1, 100, mine, mine), Commit(2, 101, mine)], False),  # ours
        ([Commit(3, 555, frozenset({(NFPROTO_INET, "other")}))], False),  # not our table
        ([Commit(4, 555, mine), Commit(5, 556, mine, mine)], False),  # two foreign: one call
        ([], True),  # notifications lost
    ])
    for _ in range(4):
        w._readable()
    assert calls == [Commit(5, 556, mine, mine), None]
    assert (w.foreign, w.lost) == (2, 1)
