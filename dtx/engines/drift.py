"""How far a reduced-precision engine drifts from the fp32 export, on real pairs.

Reported per path (decoupled, coupled): max-abs error of the outputs and the share of pairs
whose predicted answer span (QA) or label (pair tasks) is the same as fp32's.
"""

from __future__ import annotations

import numpy as np
from tqdm import tqdm

from dtx.engines.runner import Runner
from dtx.export.parity import compare
from dtx.model.decode import coupled_passage_slots, decoupled_passage_slots, predictions
from dtx.model.samples import PairBatch


def measure_drift(candidate: Runner, reference: Runner, batches: list[PairBatch], progress: bool = True) -> dict:
    stats = {path: {"max_abs": 0.0, "agree": 0, "pairs": 0} for path in ("decoupled", "coupled")}
    for b in tqdm(batches, desc="drift vs fp32", unit="batch", disable=not progress):
        q, p, c = b.question, b.passage, b.coupled()
        runs = {
            "decoupled": (candidate.decoupled(q, p), reference.decoupled(q, p), decoupled_passage_slots(q.attention_mask, p.attention_mask)),
            "coupled": (candidate.coupled(c), reference.coupled(c), coupled_passage_slots(q.attention_mask, c.attention_mask)),
        }
        rows = np.arange(p.input_ids.shape[0]) % q.input_ids.shape[0]  # the question each passage row pairs with
        real = {"decoupled": np.concatenate([q.attention_mask[rows], p.attention_mask], axis=1), "coupled": c.attention_mask}
        for path, (got, ref, slots) in runs.items():
            s = stats[path]
            for name in ref:  # the comparator export parity and engine parity use; padded slots do not count
                s["max_abs"] = max(s["max_abs"], compare(path, "", name, got[name], ref[name], float("inf"), real=real[path]).max_abs)
            agree = [a == r for a, r in zip(predictions(got, slots), predictions(ref, slots))]
            s["agree"] += sum(agree)
            s["pairs"] += len(agree)
    for s in stats.values():
        s["agreement"] = s["agree"] / max(s["pairs"], 1)
    return stats
