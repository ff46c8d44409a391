"""Counters and latency histograms in Prometheus' text format, kept in-process (one server, one registry)."""

from __future__ import annotations

import threading
from collections import defaultdict

LATENCY_BUCKETS_MS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000)
PAIR_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


class Metrics:
    """requests by endpoint and status, per-stage latency (retrieve, fetch, input, cross, request) and batch sizes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: dict[tuple[str, int], int] = defaultdict(int)
        self.hist: dict[tuple[str, str], list[float]] = {}

    def request(self, endpoint: str, status: int) -> None:
        with self._lock:
            self.requests[endpoint, status] += 1

    def observe(self, name: str, label: str, value: float) -> None:
        with self._lock:
            self.hist.setdefault((name, label), []).append(value)

    def text(self) -> str:
        with self._lock:
            lines = ["# HELP dtx_requests_total HTTP requests by endpoint and status.", "# TYPE dtx_requests_total counter"]
            lines += [f'dtx_requests_total{{endpoint="{e}",status="{s}"}} {n}' for (e, s), n in sorted(self.requests.items())]
            errors = sum(n for (_, s), n in self.requests.items() if s >= 400)
            lines += ["# HELP dtx_errors_total Requests answered with a 4xx or 5xx status.", "# TYPE dtx_errors_total counter", f"dtx_errors_total {errors}"]
            for name, help_, buckets, label in (
                ("dtx_stage_latency_ms", "Milliseconds per stage of a request or batch.", LATENCY_BUCKETS_MS, "stage"),
                ("dtx_batch_pairs", "(question, passage window) pairs per cross-component call.", PAIR_BUCKETS, "kind"),
            ):
                lines += [f"# HELP {name} {help_}", f"# TYPE {name} histogram"]
                for (n, value), samples in sorted(self.hist.items()):
                    if n != name:
                        continue
                    for edge in buckets:
                        lines.append(f'{name}_bucket{{{label}="{value}",le="{edge}"}} {sum(x <= edge for x in samples)}')
                    lines.append(f'{name}_bucket{{{label}="{value}",le="+Inf"}} {len(samples)}')
                    lines.append(f'{name}_sum{{{label}="{value}"}} {sum(samples):.3f}')
                    lines.append(f'{name}_count{{{label}="{value}"}} {len(samples)}')
        return "\n".join(lines) + "\n"
