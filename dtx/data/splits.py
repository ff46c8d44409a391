"""Deterministic train/dev splits that leak nothing: every pair of one passage lands on one side."""

from __future__ import annotations

import hashlib

import numpy as np

from dtx.data.pairs import Pair
from dtx.errors import DtxError

SPLITS = ("dev", "train", "all")  # dev: the passages training holds out (by a hash of the passage text)


DEV_PERCENT = 10  # share of passages held out, the default of every command


def is_dev(passage: str, dev_percent: int = DEV_PERCENT) -> bool:
    """A passage's side, from a hash of its text: stable across runs, machines and orderings."""
    digest = hashlib.sha256(passage.strip().encode("utf-8")).digest()
    return int.from_bytes(digest[:4], "big") % 100 < dev_percent


def split_by_passage(pairs: list[Pair], dev_percent: int = DEV_PERCENT) -> tuple[list[Pair], list[Pair]]:
    train = [p for p in pairs if not is_dev(p.passage, dev_percent)]
    dev = [p for p in pairs if is_dev(p.passage, dev_percent)]
    return train, dev


def training_split(pairs: list[Pair], dev_percent: int, path: str | object) -> tuple[list[Pair], list[Pair]]:
    """`split_by_passage` for a training run: both sides must hold pairs, since epochs are scored and early
    stopping decides on the held-out side (none there would publish untrained weights scored NaN)."""
    train, dev = split_by_passage(pairs, dev_percent)
    if not dev or not train:
        passages = len({p.passage.strip() for p in pairs})
        side, other = ("held-out", "be scored and stopped early on") if not dev else ("training", "be trained on")
        raise DtxError(
            f"{path}: none of its {passages} passages falls on the {side} side of the split ({dev_percent}% held out, chosen by a hash "
            f"of each passage), so nothing can {other}: pass data with more distinct passages"
        )
    return train, dev


def train_subset(train: list[Pair], limit: int | None, seed: int = 0) -> list[Pair]:
    """The training pairs in a seeded shuffled order, the first `limit` of them."""
    return [train[i] for i in np.random.default_rng(seed).permutation(len(train))][:limit]


def dev_subset(dev: list[Pair], limit: int | None, seed: int = 0) -> list[Pair]:
    """The dev pairs every command scores (finetune, distill, eval, sweep): one seeded shuffle, the first `limit`."""
    return [dev[i] for i in np.random.default_rng(seed + 1).permutation(len(dev))][:limit]
