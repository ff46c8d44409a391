"""Latency statistics: percentiles, throughput and the ratios the bench reports."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Latency:
    """Seconds of each timed run of one path."""

    seconds: list[float]

    def percentile(self, q: float) -> float:
        return float(np.percentile(np.asarray(self.seconds), q)) if self.seconds else float("nan")

    @property
    def p50(self) -> float:
        return self.percentile(50)

    @property
    def p90(self) -> float:
        return self.percentile(90)

    @property
    def p99(self) -> float:
        return self.percentile(99)

    @property
    def per_second(self) -> float:
        """Throughput in runs per second (1 / mean latency)."""
        return len(self.seconds) / sum(self.seconds) if self.seconds else float("nan")

    def to_dict(self) -> dict:
        return {
            "runs": len(self.seconds),
            "p50_ms": 1e3 * self.p50,
            "p90_ms": 1e3 * self.p90,
            "p99_ms": 1e3 * self.p99,
            "per_second": self.per_second,
            "seconds": self.seconds,
        }


def speedup(baseline: Latency, candidate: Latency) -> float:
    """baseline p50 / candidate p50: how many times faster the candidate is."""
    return baseline.p50 / candidate.p50


def gflops_per_second(flops: int, latency: Latency) -> float:
    return flops / latency.p50 / 1e9
