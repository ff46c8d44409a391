"""Per-epoch dev curves of the teachers (docs/results/teacher-*.json) as one PNG: the convergence bar, at a glance.

    .venv/bin/python scripts/plot_teacher_curves.py docs/results/teacher-disflqa.json -o docs/results/teacher-curves.png
"""

from __future__ import annotations

import argparse
import json

import matplotlib

from dtx.report import save_figure

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("reports", nargs="+")
    ap.add_argument("-o", "--out", required=True)
    args = ap.parse_args()
    fig, axes = plt.subplots(1, len(args.reports), figsize=(5.5 * len(args.reports), 4), squeeze=False)
    for ax, path in zip(axes[0], args.reports):
        r = json.loads(open(path).read())
        epochs = [h["epoch"] for h in r["history"]]
        qa = "f1" in r["history"][0]["dev"]
        keys = [("f1", "F1"), ("exact", "EM"), ("HasAns_f1", "HasAns F1"), ("NoAns_f1", "NoAns")] if qa else [("accuracy", "accuracy"), ("macro_f1", "macro-F1")]
        scale = 1 if qa else 100
        for key, label in keys:
            ax.plot(epochs, [scale * h["dev"][key] for h in r["history"]], marker="o", label=label)
        ax.axvline(r["best_epoch"], color="grey", ls=":", label=f"kept: epoch {r['best_epoch']}")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set(xlabel="epoch", ylabel="dev score (%)", title=f"{r['data']} teacher ({r['dev_questions'] if qa else r.get('dev_pairs')} held-out {'questions' if qa else 'pairs'})")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    save_figure(fig, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
