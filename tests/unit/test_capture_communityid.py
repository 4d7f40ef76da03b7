"""Community ID v1 against the spec's published test vectors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgesec.capture.communityid import community_id

VECTORS = json.loads((Path(__file__).parent / "data" / "community_id_vectors.json").read_text())


@pytest.mark.parametrize("v", VECTORS["vectors"],
                         ids=lambda v: f"{v['proto']}-{v['saddr']}-{v['sport']}-s{v['seed']}")
def test_published_vector(v):
    got = community_id(v["proto"], v["saddr"], v["daddr"], v["sport"], v["dport"], seed=v["seed"])
    assert got == v["communityid"]


def test_both_directions_agree_and_differ_from_other_flows():
    a = community_id(17, "10.0.0.2", "10.0.0.1", 5000, 53)
    assert a == community_id(17, "10.0.0.1", "10.0.0.2", 53, 5000)
    assert a != community_id(17, "10.0.0.2", "10.0.0.1", 5001, 53)
    assert a != community_id(6, "10.0.0.2", "10.0.0.1", 5000, 53)
