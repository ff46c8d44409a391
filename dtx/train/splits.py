"""Deterministic train/dev splits that leak nothing: every pair of one passage lands on one side."""

from __future__ import annotations

import hashlib

from dtx.data.pairs import Pair


def is_dev(passage: str, dev_percent: int) -> bool:
    """A passage's side, from a hash of its text: stable across runs, machines and orderings."""
    digest = hashlib.sha256(passage.strip().encode("utf-8")).digest()
    return int.from_bytes(digest[:4], "big") % 100 < dev_percent


def split_by_passage(pairs: list[Pair], dev_percent: int = 10) -> tuple[list[Pair], list[Pair]]:
    train = [p for p in pairs if not is_dev(p.passage, dev_percent)]
    dev = [p for p in pairs if is_dev(p.passage, dev_percent)]
    return train, dev
