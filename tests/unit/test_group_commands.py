"""The group and access commands through the real :class:`SupervisorServer.handle`:
replies, durable state, events in the extension format, and bad input (FAIL with the
reason logged, nothing changed).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from test_commands import Harness

from edgesec.supervisor import protocol as proto
from registry_world import durable_groups

A, B, C = "11:22:33:44:55:66", "aa:bb:cc:dd:ee:ff", "00:01:02:03:04:05"
UNKNOWN = "02:00:00:00:00:99"


@pytest.fixture
def h(tmp_path: Path):
    harness = Harness(tmp_path)
    for mac in (A, B, C):
        assert harness.send(f"ACCEPT_MAC {mac} 1") == "OK\n"
    harness.events.clear()
    yield harness
    harness.store.close()


def durable(h: Harness) -> tuple[list, list]:
    return durable_groups(h.db)


def test_groups(h: Harness) -> None:
    assert h.send("GET_GROUPS") == "OK\n"
    assert h.send(f"ADD_GROUP_MEMBER cams {A}") == "OK\n"
    assert h.send("ADD_GROUP_MEMBER cams AA-BB-CC-DD-EE-FF") == "OK\n"
    assert h.send(f"ADD_GROUP_MEMBER nvr-1 {A}") == "OK\n"
    assert durable(h)[0] == [("cams", A), ("cams", B), ("nvr-1", A)]  # before the reply
    assert h.send("GET_GROUPS") == f"cams,{A}\ncams,{B}\nnvr-1,{A}\n"
    assert h.send(f"REMOVE_GROUP_MEMBER cams {A}") == "OK\n"
    assert h.send("GET_GROUPS") == f"cams,{B}\nnvr-1,{A}\n"
    lines = [proto.event_line(e) for e in h.events
             if e.kind == "group_changed"]
    assert lines == [f"GROUP_CHANGED cams {A} added\n", f"GROUP_CHANGED cams {B} added\n",
                     f"GROUP_CHANGED nvr-1 {A} added\n", f"GROUP_CHANGED cams {A} removed\n"]


def test_access(h: Harness) -> None:
    assert h.send("GET_ACCESS") == "OK\n"
    assert h.send(f"ADD_ACCESS {A} {B} tcp/80") == "OK\n"
    assert h.send(f"ADD_ACCESS {A} {B}") == "OK\n"
    assert h.send(f"ADD_ACCESS {C} {A} udp/5353") == "OK\n"
    assert sorted(durable(h)[1]) == [(C, A, "udp", 5353), (A, B, "", 0), (A, B, "tcp", 80)]
    assert h.send("GET_ACCESS") == f"{C},{A},udp/5353\n{A},{B},any\n{A},{B},tcp/80\n"
    assert h.send(f"REMOVE_ACCESS {A} {B} tcp/80") == "OK\n"
    assert h.send(f"REMOVE_ACCESS {A} {B} any") == "OK\n"  # "any" spelled out
    assert h.send("GET_ACCESS") == f"{C},{A},udp/5353\n"
    lines = [proto.event_line(e) for e in h.events
             if e.kind.startswith("access")]
    assert lines == [f"ACCESS_ADDED {A} {B} tcp/80 manual\n", f"ACCESS_ADDED {A} {B} any manual\n",
                     f"ACCESS_ADDED {C} {A} udp/5353 manual\n",
                     f"ACCESS_REMOVED {A} {B} tcp/80 manual\n",
                     f"ACCESS_REMOVED {A} {B} any manual\n"]


@pytest.mark.parametrize("command", [
    f"ADD_GROUP_MEMBER cams {UNKNOWN}",        # unknown MAC
    f"ADD_GROUP_MEMBER Cams {A}",              # bad group names
    f"ADD_GROUP_MEMBER {'g' * 33} {A}",
    f"ADD_GROUP_MEMBER ca.ms {A}",
    "ADD_GROUP_MEMBER cams 11:22:33:44:55",   # bad MAC
    f"ADD_GROUP_MEMBER door {A}",              # already a member
    f"REMOVE_GROUP_MEMBER door {B}",           # not a member
    f"REMOVE_GROUP_MEMBER nogroup {A}",
    f"ADD_ACCESS {A} {UNKNOWN}",
    f"ADD_ACCESS {UNKNOWN} {A} tcp/80",
    f"ADD_ACCESS {A} {A}",
    f"ADD_ACCESS {A} {B} tcp/0",               # port out of range
    f"ADD_ACCESS {A} {B} tcp/65536",
    f"ADD_ACCESS {A} {B} tcp/-1",
    f"ADD_ACCESS {A} {B} tcp/",
    f"ADD_ACCESS {A} {B} tcp",
    f"ADD_ACCESS {A} {B} icmp/1",              # protocol
    f"ADD_ACCESS {A} {B} TCP/80",
    f"ADD_ACCESS {A} {B} 80",
    f"ADD_ACCESS {A} {C} udp/53",              # already exists
    f"REMOVE_ACCESS {A} {C} udp/54",           # does not exist
    f"REMOVE_ACCESS {C} {A} udp/53",           # the reverse does not exist
    f"ADD_ACCESS {A} {B} tcp/80 extra",        # arity
    f"ADD_ACCESS {A}",
    "GET_GROUPS x", "GET_ACCESS x", f"ADD_GROUP_MEMBER cams {A} {B}", "REMOVE_GROUP_MEMBER cams",
])
def test_bad_input_fails_with_the_reason_logged_and_changes_nothing(
        h: Harness, command: str, caplog: pytest.LogCaptureFixture) -> None:
    assert h.send(f"ADD_GROUP_MEMBER door {A}") == "OK\n"
    assert h.send(f"ADD_ACCESS {A} {C} udp/53") == "OK\n"
    before = (h.send("GET_GROUPS"), h.send("GET_ACCESS"), durable(h), len(h.events))
    caplog.set_level("INFO")
    assert h.send(command) == "FAIL\n"
    assert (h.send("GET_GROUPS"), h.send("GET_ACCESS"), durable(h), len(h.events)) == before
    refused = [r.getMessage() for r in caplog.records if r.levelname == "INFO"]
    assert any(command.split()[0] in m for m in refused), refused
    assert not [r for r in caplog.records if r.levelname == "ERROR"]  # no handler crash


@hsettings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.sampled_from(["ADD_GROUP_MEMBER", "REMOVE_GROUP_MEMBER", "ADD_ACCESS",
                             "REMOVE_ACCESS", "GET_GROUPS", "GET_ACCESS"]),
       args=st.lists(st.one_of(st.sampled_from([A, B, UNKNOWN, "cams", "tcp/80", "any",
                                                "udp/99999"]),
                               st.text(max_size=20)), max_size=4))
def test_fuzzed_arguments_never_crash(h: Harness, name: str, args: list[str],
                                      caplog: pytest.LogCaptureFixture) -> None:
    reply = h.send(" ".join([name, *args]))
    assert reply.endswith("\n")
    assert not [r for r in caplog.records if r.levelname == "ERROR"]
    assert h.send("PING_SUPERVISOR") == "PONG\n"
