"""Each distillation loss term's share of the gradient, for the first recipe and the current one, on the same batches.

The first recipe compared attention probabilities (weight 0.5) and only the last hidden layer; its
attention term logged 0.000-0.002 and, this measures, moved next to nothing. The current one
compares the unnormalised scores and adds the layer-wise terms. A share is a term's gradient
norm over the sum of all terms' norms (dtx.train.distill.gradient_shares), on the student as the
checkpoint holds it (a fresh `dtx decouple`, or a distilled student).

    .venv/bin/python scripts/loss_shares.py CKPT --data data/disfl_qa.task.json.gz --batches 8 --json docs/results/cpu/loss-shares.json
"""

from __future__ import annotations

import argparse
from dataclasses import replace

from dtx.report import emit, save_json
from dtx.train.config import DistillConfig

RECIPES = {
    "first (attention probabilities, last layer only)": dict(attention_target="probs", attention_weight=0.5, cross_layers=False, input_layer=False),
    "scores at weight 0.5, last layer only": dict(attention_target="scores", attention_weight=0.5, cross_layers=False, input_layer=False),
    "current defaults (scores, layer-wise)": {},
}
TERMS = ["ce", "kl", "hidden", "cross_layers", "input_layer", "attention"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("ckpt", help="A decoupled checkpoint (dtx decouple / dtx distill output).")
    ap.add_argument("--data", required=True, help="The training data the student is distilled on.")
    ap.add_argument("--batches", type=int, default=8)
    ap.add_argument("--json", help="Also write the table as JSON.")
    args = ap.parse_args()
    from dtx.train.distill import gradient_shares

    report, rows = {"ckpt": args.ckpt, "data": args.data, "batches": args.batches, "recipes": {}}, []
    for name, settings in RECIPES.items():
        cfg = replace(DistillConfig(), **settings)
        shares = gradient_shares(args.ckpt, args.data, cfg, args.batches)
        report["recipes"][name] = {"settings": settings, **shares}
        rows.append([name] + [f"{100 * shares['terms'][t]['share']:.1f}% ({shares['terms'][t]['value']:.3g})" for t in TERMS])
    emit(f"share of the gradient norm (term value), {args.batches} batches of {args.data}", ["recipe"] + TERMS, rows)
    save_json(args.json, report)


if __name__ == "__main__":
    main()
