"""The OpenAPI 3.0 description of ``/api/v1`` (served at ``/api/v1/openapi.json``).

Kept beside the routes and checked against them: the tests fuzz the running
daemon with schemathesis from this document, so every status code a route can
answer is declared here with its body.
"""

from __future__ import annotations

from typing import Any

from edgesec.api.views import MAC_PATTERN

MAC = {"type": "string", "pattern": MAC_PATTERN}
VLAN = {"type": "integer", "minimum": 0, "maximum": 4094}
IPV4 = r"(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}"
GROUP = "^[a-z0-9_-]{1,32}$"
SERVICE = "^(any|(tcp|udp)/[0-9]{1,5})$"  # the range 1-65535 is checked by the server
PSK = r"^$|^[\x20-\x7e]{8,63}$|^[0-9a-fA-F]{64}$"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str = "") -> dict[str, Any]:
    return {"description": description or "OK",
            "content": {"application/json": {"schema": schema}}}


def _errors(*codes: int) -> dict[str, Any]:
    text = {400: "Bad input, with the reason", 401: "No or unknown credentials",
            403: "Scope too small, or no CSRF token", 404: "Unknown device or bridge",
            409: "Already exists", 413: "Body too large"}
    return {str(c): _json(_ref("Error"), text[c]) for c in (401, 403, *codes)}


def _body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": schema}}}


_MAC_PARAM = {"in": "path", "required": True, "schema": MAC}

SPEC: dict[str, Any] = {
    "openapi": "3.0.3",
    "info": {"title": "edgesec management API", "version": "1"},
    "components": {
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        "schemas": {
            "Error": {"type": "object", "required": ["error", "detail"],
                      "properties": {"error": {"type": "string"},
                                     "detail": {"type": "string"}}},
            "Device": {
                "type": "object",
                "required": ["mac", "label", "vlan", "ips", "allowed", "nat", "status",
                             "joined_at", "bridges", "has_psk"],
                "properties": {
                    "mac": {"type": "string"}, "label": {"type": "string"},
                    "vlan": {"type": "integer"},
                    "ips": {"type": "array", "items": {"type": "string"}},
                    "allowed": {"type": "boolean"}, "nat": {"type": "boolean"},
                    "status": {"type": "string",
                               "enum": ["connected", "disconnected", "unknown"]},
                    "joined_at": {"type": "string", "nullable": True},
                    "bridges": {"type": "array", "items": {"type": "string"}},
                    "has_psk": {"type": "boolean"}}},
            "DevicePatch": {
                "type": "object", "minProperties": 1, "additionalProperties": False,
                "properties": {"nat": {"type": "boolean"}, "allowed": {"type": "boolean"},
                               "vlan": VLAN, "label": {"type": "string", "maxLength": 254},
                               "psk": {"type": "string", "pattern": PSK, "writeOnly": True}}},
            "NewDevice": {"type": "object", "required": ["mac", "vlan"],
                          "properties": {"mac": MAC, "vlan": VLAN}},
            "Bridge": {"type": "object", "required": ["a", "b"],
                       "properties": {"a": {"type": "string"}, "b": {"type": "string"},
                                      "reason": {"type": "string"},
                                      "created": {"type": "string", "nullable": True},
                                      "expires": {"type": "string", "nullable": True}}},
            "Group": {"type": "object", "required": ["group", "members"],
                      "properties": {"group": {"type": "string"},
                                     "members": {"type": "array", "items": {"type": "string"}}}},
            "Access": {"type": "object", "required": ["from", "to"],
                       "properties": {"from": MAC, "to": MAC,
                                      "service": {"type": "string", "pattern": SERVICE}}},
            "NewTicket": {"type": "object", "required": ["label", "vlan"],
                          "properties": {"label": {"type": "string", "maxLength": 254},
                                         "vlan": VLAN, "issuer": MAC}},
            "Ticket": {"type": "object",
                       "required": ["passphrase", "label", "vlan", "expires", "ssid", "wifi_qr"],
                       "properties": {"passphrase": {"type": "string"},
                                      "label": {"type": "string"}, "vlan": {"type": "integer"},
                                      "expires": {"type": "string"}, "ssid": {"type": "string"},
                                      "wifi_qr": {"type": "string"}}},
            "Status": {
                "type": "object", "required": ["state", "services", "devices", "bridges"],
                "properties": {
                    "state": {"type": "string", "enum": ["ok", "degraded", "failed"]},
                    "uptime_seconds": {"type": "integer"},
                    "devices": {"type": "object"}, "bridges": {"type": "integer"},
                    "services": {"type": "array", "items": {
                        "type": "object", "required": ["name", "state", "detail"],
                        "properties": {
                            "name": {"type": "string"},
                            "state": {"type": "string", "enum": ["ok", "degraded", "failed"]},
                            "detail": {"type": "string"},
                            "counters": {"type": "object"}}}}}},
            "Explanation": {
                "type": "object",
                "required": ["src", "dst", "allowed", "rule", "reasons", "remedies"],
                "properties": {"src": {"type": "string"}, "dst": {"type": "string"},
                               "allowed": {"type": "boolean"}, "rule": {"type": "string"},
                               "reasons": {"type": "array", "items": {"type": "string"}},
                               "remedies": {"type": "array", "items": {"type": "string"}},
                               "dropped": {"type": "object", "properties": {
                                   "packets": {"type": "integer"},
                                   "bytes": {"type": "integer"},
                                   "forget_after_seconds": {"type": "integer"}}}}},
        },
    },
    "security": [{"bearer": []}],
    "paths": {
        "/api/v1/devices": {
            "get": {"summary": "Every device", "responses": {
                "200": _json({"type": "array", "items": _ref("Device")}), **_errors()}},
            "post": {"summary": "Admit a new device on a VLAN (ACCEPT_MAC)",
                     "requestBody": _body(_ref("NewDevice")),
                     "responses": {"201": _json(_ref("Device"), "Created"),
                                   **_errors(400, 409, 413)}},
        },
        "/api/v1/devices/{mac}": {
            "parameters": [{"name": "mac", **_MAC_PARAM}],
            "get": {"summary": "One device", "responses": {
                "200": _json(_ref("Device")), **_errors(400, 404)}},
            "patch": {"summary": "Change NAT, admission, VLAN, label or PSK",
                      "requestBody": _body(_ref("DevicePatch")),
                      "responses": {"200": _json(_ref("Device")),
                                    **_errors(400, 404, 413)}},
        },
        "/api/v1/bridges": {
            "get": {"summary": "Every bridge", "responses": {
                "200": _json({"type": "array", "items": _ref("Bridge")}), **_errors()}},
            "post": {"summary": "Bridge two devices", "requestBody": _body(
                {"type": "object", "required": ["a", "b"], "properties": {"a": MAC, "b": MAC}}),
                "responses": {"201": _json(_ref("Bridge"), "Created"),
                              **_errors(400, 404, 409, 413)}},
        },
        "/api/v1/bridges/{a}/{b}": {
            "parameters": [{"name": "a", **_MAC_PARAM}, {"name": "b", **_MAC_PARAM}],
            "delete": {"summary": "Remove a bridge", "responses": {
                "204": {"description": "Removed"}, **_errors(400, 404)}},
        },
        "/api/v1/groups": {"get": {"summary": "Groups and their members", "responses": {
            "200": _json({"type": "array", "items": _ref("Group")}), **_errors(404)}}},
        "/api/v1/groups/{group}/members/{mac}": {
            "parameters": [{"name": "group", "in": "path", "required": True,
                            "schema": {"type": "string", "pattern": GROUP}},
                           {"name": "mac", **_MAC_PARAM}],
            "put": {"summary": "Add a device to a group (ADD_GROUP_MEMBER)", "responses": {
                "201": _json(_ref("Group"), "Added"), **_errors(400, 404, 409)}},
            "delete": {"summary": "Remove a device from a group", "responses": {
                "204": {"description": "Removed"}, **_errors(400, 404)}},
        },
        "/api/v1/access": {
            "get": {"summary": "One-way access rules", "responses": {
                "200": _json({"type": "array", "items": _ref("Access")}), **_errors(404)}},
            "post": {"summary": "Let one device open connections to another (ADD_ACCESS)",
                     "requestBody": _body(_ref("Access")),
                     "responses": {"201": _json(_ref("Access"), "Created"),
                                   **_errors(400, 404, 409, 413)}},
            "delete": {"summary": "Remove a rule (REMOVE_ACCESS)", "parameters": [
                {"name": "from", "in": "query", "required": True, "schema": MAC},
                {"name": "to", "in": "query", "required": True, "schema": MAC},
                {"name": "service", "in": "query", "required": False,
                 "schema": {"type": "string", "pattern": SERVICE}}],
                "responses": {"204": {"description": "Removed"}, **_errors(400, 404)}},
        },
        "/api/v1/tickets": {
            "post": {"summary": "A single-use onboarding passphrase (shown once)",
                     "requestBody": _body(_ref("NewTicket")),
                     "responses": {"201": _json(_ref("Ticket"), "Created"),
                                   **_errors(400, 413)}},
        },
        "/api/v1/status": {"get": {"summary": "Services and their state", "responses": {
            "200": _json(_ref("Status")), **_errors()}}},
        "/api/v1/explain": {"get": {
            "summary": "Why a device can or cannot reach a destination",
            "parameters": [
                {"name": "src", "in": "query", "required": True, "schema": MAC},
                {"name": "dst", "in": "query", "required": True, "schema": {
                    "type": "string",
                    "pattern": f"{MAC_PATTERN}|^{IPV4}$|^internet$"}}],
            "responses": {"200": _json(_ref("Explanation")), **_errors(400)}}},
        "/api/v1/traffic": {"get": {
            "summary": "Per device: the last hour of captured traffic and when it last sent",
            "responses": {"200": _json({"type": "object", "additionalProperties": {
                "type": "object",
                "required": ["sent_packets", "sent_bytes", "received_packets",
                             "received_bytes", "last_seen"],
                "properties": {"sent_packets": {"type": "integer"},
                               "sent_bytes": {"type": "integer"},
                               "received_packets": {"type": "integer"},
                               "received_bytes": {"type": "integer"},
                               "last_seen": {"type": "string", "nullable": True}}}}),
                **_errors()}}},
        "/metrics": {"get": {"summary": "Prometheus metrics", "responses": {
            "200": {"description": "OK", "content": {"text/plain": {"schema": {
                "type": "string"}}}}, **_errors()}}},
    },
}
