"""How much a calibrated "no answer" threshold would move a reader behind a retriever, student and teacher alike.

Why: behind BM25 top-k the student answers where the teacher declines (the recipe student's NoAns 37.5
against the teacher's 46.5): it reads paragraphs without the answer and its best span still beats its
[CLS] score. `dtx eval-store` answers when the best candidate's span score minus its no-answer score is
above the reader's threshold (0 uncalibrated; `dtx calibrate` chooses one on the selection split). This
measures what any threshold does on the reported questions themselves: it reads every held-out question
once behind BM25 (the student from the store's cached
passages, the coupled teacher on the same candidates), keeps each one's best candidate (answer, span -
null), and then scores F1 against thresholds: at 0 (today), the best on all questions (an oracle on the
reported questions: an upper bound), and cross-fitted (chosen on one random half, scored on the other,
both ways: what calibrating on questions other than the reported ones would give).

    .venv/bin/python scripts/null_threshold.py STORE --data data/disfl_qa.task.json.gz -k 20 --rows rows.json --json fit.json

`--rows` keeps the per-question reads (the slow part); given an existing file, the reads are not redone.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from tqdm import tqdm

from dtx.eval.squad import squad_v2
from dtx.report import emit, save_json

NOTHING = ("", -1e9)  # a question with no candidate: "no answer" at every threshold


def read_questions(store: str, data: str, k: int) -> list[dict]:
    """Each held-out question's gold answers and, for the student and the teacher, the best candidate's (answer, span - null)."""
    from dtx.query import QueryPipeline
    from dtx.query.open_domain import held_out_questions
    from dtx.query.pipeline import NothingRetrieved
    from dtx.store.passage_store import NothingToSearch

    def top(candidates) -> tuple[str, float]:
        return (candidates[0].answer or "", float(candidates[0].score)) if candidates else NOTHING

    rows = []
    with QueryPipeline.open(store, None, None) as pipe:
        for pair in tqdm(held_out_questions(data, None), desc="retrieve + read", unit="question"):
            try:
                student = pipe.answer(pair.question, k)
            except (NothingRetrieved, NothingToSearch):  # as eval-store counts it: both answer "no answer"
                rows.append({"gold": pair.answers, "student": NOTHING, "teacher": NOTHING})
                continue
            teacher = pipe.rerank_coupled(pair.question, [c.id for c in student.candidates])
            rows.append({"gold": pair.answers, "student": top(student.candidates), "teacher": top(teacher.candidates)})
    return rows


def f1_at(rows: list[dict], who: str, threshold: float) -> dict:
    """SQuAD 2.0 scores of `who` answering only where its best candidate's span - null exceeds `threshold`."""
    return squad_v2([r["gold"] for r in rows], [r[who][0] if r[who][1] > threshold else "" for r in rows])


def best_threshold(rows: list[dict], who: str) -> float:
    """The threshold with the highest F1 on `rows`: the exact choice `dtx calibrate` makes (dtx.eval.no_answer)."""
    from dtx.eval.no_answer import Read, choose

    return choose([Read(*r[who]) for r in rows], [r["gold"] for r in rows])[0]


def fit(rows: list[dict], who: str, seed: int = 0) -> dict:
    """F1 at 0, at the oracle threshold, and cross-fitted over two random halves (weighted by their sizes)."""
    order = np.random.default_rng(seed).permutation(len(rows))
    halves = [[rows[i] for i in order[: len(rows) // 2]], [rows[i] for i in order[len(rows) // 2 :]]]
    folds = []
    for chosen_on, scored_on in ((0, 1), (1, 0)):
        t = best_threshold(halves[chosen_on], who)
        folds.append({"threshold": t, "f1": f1_at(halves[scored_on], who, t)["f1"], "questions": len(halves[scored_on])})
    at0, oracle = f1_at(rows, who, 0.0), best_threshold(rows, who)
    return {
        "f1_at_0": at0["f1"], "has_ans_f1_at_0": at0.get("HasAns_f1"), "no_ans_f1_at_0": at0.get("NoAns_f1"),
        "oracle_threshold": oracle, "f1_oracle": f1_at(rows, who, oracle)["f1"],
        "folds": folds, "f1_cross_fitted": sum(f["f1"] * f["questions"] for f in folds) / len(rows),
    }  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("store")
    ap.add_argument("--data", required=True)
    ap.add_argument("-k", type=int, default=20)
    ap.add_argument("--rows", required=True, help="Per-question reads: written, or read back when the file exists.")
    ap.add_argument("--seed", type=int, default=0, help="Seed of the random halves.")
    ap.add_argument("--json")
    args = ap.parse_args()
    rows_path = Path(args.rows)
    if rows_path.is_file():
        rows = json.loads(rows_path.read_text())
    else:
        rows = read_questions(args.store, args.data, args.k)
        rows_path.write_text(json.dumps(rows))
    result = {who: fit(rows, who, args.seed) for who in ("student", "teacher")}
    kept = {name: 100 * result["student"][name] / result["teacher"][name] for name in ("f1_at_0", "f1_cross_fitted", "f1_oracle")}
    emit(
        f"BM25 top-{args.k}, {len(rows)} held-out questions: F1 by no-answer threshold (span - null)",
        ["reader", "F1 at 0", "NoAns at 0", "cross-fitted (thresholds)", "oracle (threshold)"],
        [[who, f"{r['f1_at_0']:.2f}", f"{r['no_ans_f1_at_0']:.1f}", f"{r['f1_cross_fitted']:.2f} ({', '.join(format(f['threshold'], '.2f') for f in r['folds'])})",
          f"{r['f1_oracle']:.2f} ({r['oracle_threshold']:.2f})"] for who, r in result.items()]
        + [["student / teacher", f"{kept['f1_at_0']:.1f}%", "", f"{kept['f1_cross_fitted']:.1f}%", f"{kept['f1_oracle']:.1f}%"]],
    )  # fmt: skip
    save_json(args.json, {"args": vars(args), "questions": len(rows), **result, "kept_percent": kept})


if __name__ == "__main__":
    main()
