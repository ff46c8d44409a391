"""How much an augmentation copy changes what the teacher reads: its top span on the copy against on the original.

Why: `dtx distill --augment` copies carry no label and train on the teacher's targets only, so a
copy is as useful as the teacher's reading of it is informative. A copy the teacher reads as the
original teaches the student to read a new surface for the same content; one it finds unanswerable
teaches a new answer. This measures both for each side and rate, on answerable windows of the
*training* split only (the split `dtx distill` trains on; the held-out questions are never read).

    .venv/bin/python scripts/augment_agreement.py runs/s24n6-dec --data data/disfl_qa.task.json.gz --windows 300 --json augment-agreement.json
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from tqdm import tqdm

from dtx.data.augment import PASSAGE_RATE, RATE
from dtx.report import emit, save_json
from dtx.train.config import DistillConfig

# (side, rate): what `--augment-side` builds, and the passage at the question's rate for contrast
COPIES = [("question", RATE), ("passage", PASSAGE_RATE), ("passage", RATE)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("ckpt", help="A decoupled QA checkpoint (its teacher reads the copies).")
    ap.add_argument("--data", required=True, help="The QA data the student is distilled on.")
    ap.add_argument("--windows", type=int, default=300, help="Answerable training windows to read.")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", help="Also write the table as JSON.")
    args = ap.parse_args()
    from dtx.data.pairs import read_pairs
    from dtx.data.qa import qa_features
    from dtx.data.splits import training_split
    from dtx.model.checkpoint import load_checkpoint
    from dtx.model.decoupled import layer_states
    from dtx.model.surgery import build_coupled
    from dtx.train.distill import Example, _joined, _neighbours, make_batch, varied

    ckpt = load_checkpoint(args.ckpt)
    seg, teacher = ckpt.segmenter(), build_coupled(ckpt.teacher()).eval()
    train = training_split(read_pairs(args.data), DistillConfig.dev_percent, args.data, DistillConfig.select_percent)[0]
    features = [f for f in qa_features(train[: 2 * args.windows], seg, args.data) if f.start >= 0][: args.windows]
    originals = [Example(f.question, f.passage, (f.start, f.end)) for f in features]

    def top_spans(examples: list[Example], desc: str) -> list[tuple[int, int]]:
        """The teacher's top start and end slot per example (0, 0: no answer); batches laid out as the originals' are."""
        out = []
        with torch.no_grad():
            for i in tqdm(range(0, len(examples), args.batch_size), desc=desc, unit="batch"):
                b = make_batch(seg, examples[i : i + args.batch_size], qa=True)
                ids, mask, types = _joined(b)
                start, end = teacher.head(layer_states(teacher.encoder.layers, teacher.encoder.embed(ids, mask, types), mask)[-1])
                out += zip(start.masked_fill(~b["slots"], -1e9).argmax(-1).tolist(), end.masked_fill(~b["slots"], -1e9).argmax(-1).tolist())
        return out

    base = top_spans(originals, "originals")
    report = {"ckpt": args.ckpt, "data": args.data, "windows": len(originals), "seed": args.seed, "teacher_no_answer_on_originals": float(np.mean([s == (0, 0) for s in base])), "copies": []}
    rows = []
    for side, rate in COPIES:
        rng = np.random.default_rng(args.seed)
        neighbours = _neighbours(seg, teacher, originals, side)
        copies = [varied(e, neighbours, rng, side, (rate, rate)) for e in originals]
        spans = top_spans(copies, f"{side} copies at {rate:g}")
        kept, no_answer = float(np.mean([a == b for a, b in zip(base, spans)])), float(np.mean([s == (0, 0) for s in spans]))
        report["copies"].append({"side": side, "rate": rate, "top_span_kept": kept, "no_answer": no_answer})
        rows.append([side, f"{rate:g}", f"{100 * kept:.1f}%", f"{100 * no_answer:.1f}%"])
    emit(f"the teacher's top span on {len(originals)} answerable training windows of {args.data}, copy against original", ["side", "rate", "top span kept", "says no answer"], rows)
    save_json(args.json, report)


if __name__ == "__main__":
    main()
