"""Which services are required, and the refusal naming what failed (no forwarding touched)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from edgesec.failclosed import GatewayRefused, refuse_if_missing, required_services


def settings(require: tuple[str, ...] = (), forward: bool = False) -> SimpleNamespace:
    return SimpleNamespace(system=SimpleNamespace(require_services=require,
                                                  set_ip_forward=forward))


ALL = {"subnets", "firewall", "radius", "dhcp", "mdns", "capture"}


def test_default_is_enforcement_plus_radius_and_dhcp_when_enabled() -> None:
    assert required_services(settings(), ALL) == {"subnets", "firewall", "radius", "dhcp"}
    assert required_services(settings(), {"firewall", "mdns"}) == {"firewall"}
    assert required_services(settings(), set()) == frozenset()


def test_none_keeps_enforcement_and_a_list_adds_to_it() -> None:
    assert required_services(settings(("none",)), ALL) == {"subnets", "firewall"}
    assert required_services(settings(("mdns",)), ALL) == {"subnets", "firewall", "mdns"}


def test_listed_service_that_is_not_enabled_is_refused() -> None:
    with pytest.raises(GatewayRefused, match="requireServices names capture"):
        required_services(settings(("capture",)), {"firewall"})


def test_refusal_names_each_failed_required_service() -> None:
    failed = {"firewall": "cannot be built: no nftables backend works", "mdns": "x"}
    refuse_if_missing({"subnets"}, failed, settings())  # nothing required failed
    with pytest.raises(GatewayRefused) as err:
        refuse_if_missing({"subnets", "firewall"}, failed, settings())
    assert str(err.value) == ("required service(s) not running: firewall cannot be built: "
                              "no nftables backend works")
