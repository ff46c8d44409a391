"""Bench: per-query latency of the decoupled model against the coupled baseline (`dtx bench`)."""
