"""Deterministic train/dev splits that leak nothing: every pair of one passage lands on one side."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from dtx.data.pairs import Pair
from dtx.errors import DtxError

SPLITS = ("dev", "train", "all")  # dev: the passages training holds out (by a hash of the passage text)


DEV_PERCENT = 10  # share of passages held out, the default of every command


def passage_band(passage: str) -> int:
    """A passage's place, 0-99, from a hash of its text: stable across runs, machines and orderings."""
    digest = hashlib.sha256(passage.strip().encode("utf-8")).digest()
    return int.from_bytes(digest[:4], "big") % 100


def is_dev(passage: str, dev_percent: int = DEV_PERCENT) -> bool:
    """Whether a passage is on the held-out side that `dtx eval`, `dtx index --split dev` and every report read."""
    return passage_band(passage) < dev_percent


def _sides(pairs: list[Pair], dev_percent: int, select_percent: int) -> tuple[list[Pair], list[Pair], list[Pair]]:
    """(train, select, dev) by each passage's band: dev below `dev_percent`, select the next `select_percent`, train the rest."""
    bands = [passage_band(p.passage) for p in pairs]
    dev = [p for p, b in zip(pairs, bands) if b < dev_percent]
    select = [p for p, b in zip(pairs, bands) if dev_percent <= b < dev_percent + select_percent]
    train = [p for p, b in zip(pairs, bands) if b >= dev_percent + select_percent]
    return train, select, dev


def split_by_passage(pairs: list[Pair], dev_percent: int = DEV_PERCENT) -> tuple[list[Pair], list[Pair]]:
    train, _, dev = _sides(pairs, dev_percent, 0)
    return train, dev


def training_split(pairs: list[Pair], dev_percent: int, path: str | object, select_percent: int = 0) -> tuple[list[Pair], list[Pair], list[Pair]]:
    """(train, select, dev) for a training run, every passage's pairs on one side.

    dev is what `dtx eval` reports on; select, the next `select_percent` of passages by hash, is what epochs
    are scored, stopped early and kept on, so a reported dev figure is not also the one that chose the epoch.
    With `select_percent` 0 the epochs are chosen on dev itself (runs made before the selection band
    existed). Every side must hold pairs: none to score on would publish untrained weights scored NaN.
    """
    train, select, dev = _sides(pairs, dev_percent, select_percent)
    select = select if select_percent else dev
    for side, held, other in (("held-out", dev, "be reported on"), ("epoch-selection", select, "choose the epoch kept"), ("training", train, "be trained on")):
        if not held:
            passages = len({p.passage.strip() for p in pairs})
            fix = "; or pass --select-percent 0 to choose epochs on the held-out passages themselves" if side == "epoch-selection" else ""
            raise DtxError(
                f"{path}: none of its {passages} passages falls on the {side} side of the split ({dev_percent}% held out and "
                f"{select_percent}% for epoch selection, chosen by a hash of each passage), so nothing can {other}: pass data with more distinct passages{fix}"
            )
    return train, select, dev


def train_subset(train: list[Pair], limit: int | None, seed: int = 0) -> list[Pair]:
    """The training pairs in a seeded shuffled order, the first `limit` of them."""
    return [train[i] for i in np.random.default_rng(seed).permutation(len(train))][:limit]


def dev_subset(dev: list[Pair], limit: int | None, seed: int = 0) -> list[Pair]:
    """The dev pairs every command scores (finetune, distill, eval, sweep): one seeded shuffle, the first `limit`."""
    return [dev[i] for i in np.random.default_rng(seed + 1).permutation(len(dev))][:limit]


@dataclass
class HeldOut:
    """What a training run scores after each epoch: the selection split (chooses the epoch) and dev (reported)."""

    select: list[Pair]
    dev: list[Pair]

    @property
    def sides(self) -> dict[str, list[Pair]]:
        """The sides to score, the choosing one first; one side when epochs are chosen on dev itself."""
        return {"dev": self.dev} if self.select is self.dev else {"select": self.select, "dev": self.dev}


def held_out(pairs: list[Pair], cfg, path: str | object) -> tuple[list[Pair], HeldOut]:
    """A run's training pairs (`cfg.train_limit` of them) and its held-out sides (`cfg.dev_limit` each), by `training_split`.

    `cfg` is a finetune or distill config (dev_percent, select_percent, train_limit, dev_limit, seed).
    """
    train, select, dev = training_split(pairs, cfg.dev_percent, path, cfg.select_percent)
    dev_cut = dev_subset(dev, cfg.dev_limit, cfg.seed)
    select_cut = dev_cut if select is dev else dev_subset(select, cfg.dev_limit, cfg.seed)
    return train_subset(train, cfg.train_limit, cfg.seed), HeldOut(select_cut, dev_cut)
