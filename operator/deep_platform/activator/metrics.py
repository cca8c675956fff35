"""Prometheus metrics of the activator, per service (namespace, name)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

REQUESTS = Counter(
    "deep_activator_requests_total",
    "Requests the activator answered, per service and HTTP status code.",
    ["namespace", "name", "code"],
)
LATENCY = Histogram(
    "deep_activator_request_duration_seconds",
    "Time from a request's arrival to the end of its response, per service (cold starts included).",
    ["namespace", "name"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
)
COLD_START = Histogram(
    "deep_activator_cold_start_duration_seconds",
    "Time from a request finding the service at zero to a ready endpoint, per service.",
    ["namespace", "name"],
    buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300),
)
QUEUE_DEPTH = Gauge(
    "deep_activator_queue_depth",
    "Requests held while the service starts, per service.",
    ["namespace", "name"],
)
IN_FLIGHT = Gauge(
    "deep_activator_in_flight_requests",
    "Requests being forwarded right now, per service.",
    ["namespace", "name"],
)
SCALE_EVENTS = Counter(
    "deep_activator_scale_total",
    "Replica changes the activator made, per service and direction (up, down, wake).",
    ["namespace", "name", "direction"],
)
AUTH_REFUSALS = Counter(
    "deep_activator_auth_refusals_total",
    "Requests refused before reaching a service (no token, bad token, not allowed), per reason.",
    ["namespace", "name", "reason"],
)
