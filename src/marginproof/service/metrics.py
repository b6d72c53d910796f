"""Prometheus metrics of the service, on a registry owned by the container (no globals)."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)


@dataclass
class Metrics:
    """Every metric the service exports at ``/metrics``."""

    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.tick_to_margin = Histogram(
            "marginproof_tick_to_margin_seconds",
            "From a tick entering the input log to its margin batch being published",
            registry=r, buckets=_LATENCY_BUCKETS)
        self.entry_seconds = Histogram(
            "marginproof_engine_entry_seconds", "Engine time per input-log entry",
            ["kind"], registry=r, buckets=_LATENCY_BUCKETS)
        self.entries = Counter("marginproof_engine_entries_total",
                               "Input-log entries processed", ["partition"], registry=r)
        self.accounts_remargined = Counter("marginproof_accounts_remargined_total",
                                           "Account margin updates emitted", registry=r)
        self.events = Counter("marginproof_events_total", "Engine events emitted", ["type"],
                              registry=r)
        self.queue_depth = Gauge("marginproof_queue_depth",
                                 "Input-log entries appended but not yet processed",
                                 ["partition"], registry=r)
        self.bus_queue_depth = Gauge("marginproof_bus_queue_depth",
                                     "Messages waiting in in-process bus queues", registry=r)
        self.feed_stale = Gauge("marginproof_feed_stale",
                                "1 while a feed stream is stale (no tick within stale_after_s)",
                                ["stream"], registry=r)
        self.feed_messages = Counter("marginproof_feed_messages_total",
                                     "Venue messages received", ["feed", "outcome"], registry=r)
        self.whatif_seconds = Histogram("marginproof_whatif_seconds",
                                        "What-if simulation time", registry=r,
                                        buckets=_LATENCY_BUCKETS)
        self.auth_failures = Counter("marginproof_auth_failures_total",
                                     "Rejected API requests", ["reason"], registry=r)
