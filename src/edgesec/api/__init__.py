"""The management API: HTTP + JSON, Prometheus metrics and the web dashboard."""
