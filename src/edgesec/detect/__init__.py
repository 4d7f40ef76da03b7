"""Early detection and containment of compromised devices (issue #16).

``quarantine``/``commands``: containment as registry state, enforced by the
firewall's ``quarantined`` set; ``alerts``: the one alert record type (SQLite,
EVE JSON, supervisor event); ``detectors``/``engine``/``profile``: behaviour
profiles and the detectors reading the capture records; ``service``: the
gateway service that runs them beside the capture worker.
"""
