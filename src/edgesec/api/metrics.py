"""Prometheus exposition of the gateway's state and its services' own counters.

Built per scrape from the registry and from each service's ``counters()``
(monotonic counts only, read, never reset); nothing is counted twice. A
counter key may carry labels as ``name|label=value|label=value``; it becomes
``edgesec_<service>_<name>_total{label="value"}``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from edgesec.registry import STATUS_CONNECTED, Registry

STATES = ("ok", "degraded", "failed")
_NAME = re.compile(r"[^a-zA-Z0-9_]")


def metric_name(*parts: str) -> str:
    return "_".join(_NAME.sub("_", p).strip("_").lower() for p in parts if p)


def split_key(key: str) -> tuple[str, dict[str, str]]:
    name, *pairs = key.split("|")
    labels = dict(p.split("=", 1) for p in pairs if "=" in p)
    return name, labels


class GatewayCollector(Collector):
    def __init__(self, registry: Registry, services: list[dict[str, Any]],
                 counters: Mapping[str, Mapping[str, float]],
                 api: Mapping[str, float]) -> None:
        self.registry = registry
        self.services = services
        self.counters = counters
        self.api = api

    def collect(self) -> Iterator[Metric]:
        devices = self.registry.devices()
        g = GaugeMetricFamily("edgesec_devices", "Devices in the registry by policy state",
                              labels=["state"])
        g.add_metric(["allowed"], sum(d.allow for d in devices))
        g.add_metric(["denied"], sum(not d.allow for d in devices))
        yield g
        yield GaugeMetricFamily("edgesec_devices_connected",
                                "Devices the access point reports connected",
                                value=sum(d.status == STATUS_CONNECTED for d in devices))
        yield GaugeMetricFamily("edgesec_devices_nat", "Devices allowed to reach the internet",
                                value=sum(d.allow and d.nat for d in devices))
        yield GaugeMetricFamily("edgesec_devices_with_address",
                                "Devices with at least one leased address",
                                value=sum(bool(d.ips) for d in devices))
        b = GaugeMetricFamily("edgesec_bridges", "Bridges between two devices by origin",
                              labels=["origin"])
        origins = {"manual": 0, "auto": 0}
        for rec in self.registry.bridge_records():
            origins["manual" if rec.reason == "manual" else "auto"] += 1
        for origin, n in origins.items():
            b.add_metric([origin], n)
        yield b
        yield GaugeMetricFamily("edgesec_tickets_open", "Onboarding tickets not yet used",
                                value=len(self.registry.tickets()))
        s = GaugeMetricFamily("edgesec_service_state",
                              "1 for the state each service is in (ok, degraded, failed)",
                              labels=["service", "state"])
        for svc in self.services:
            for state in STATES:
                s.add_metric([svc["name"], state], float(svc["state"] == state))
        yield s
        yield from self._service_counters()
        yield GaugeMetricFamily("edgesec_api_event_subscribers",
                                "Clients following /api/v1/events",
                                value=self.api.get("sse_clients", 0))
        yield CounterMetricFamily("edgesec_api_events_dropped",
                                  "Events dropped because a subscriber was too slow",
                                  value=self.api.get("sse_dropped", 0))

    def _service_counters(self) -> Iterator[Metric]:
        families: dict[str, CounterMetricFamily] = {}
        for service, values in sorted(self.counters.items()):
            for key, value in sorted(values.items()):
                name, labels = split_key(key)
                full = metric_name("edgesec", service, name)
                fam = families.get(full)
                if fam is None:
                    fam = families[full] = CounterMetricFamily(
                        full, f"{service}: {name.replace('_', ' ')}", labels=sorted(labels))
                fam.add_metric([labels[k] for k in sorted(labels)], value)
        yield from families.values()


def render_metrics(registry: Registry, services: list[dict[str, Any]],
                   counters: Mapping[str, Mapping[str, float]],
                   api: Mapping[str, float]) -> bytes:
    reg = CollectorRegistry(auto_describe=False)
    reg.register(GatewayCollector(registry, services, counters, api))
    return generate_latest(reg)
