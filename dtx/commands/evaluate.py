"""Accuracy: eval (teacher vs student on held-out data) and eval-store (end to end over a store)."""

from __future__ import annotations

import click

from dtx.commands.common import OUTPUT_FILE, quiet_transformers
from dtx.data.splits import SPLITS


@click.command("eval")
@click.argument("model", type=click.Path(file_okay=False))
@click.option("--data", required=True, type=click.Path(dir_okay=False), help="QA: SQuAD JSON / JSONL with answers / Disfl-QA; pair: labelled pairs; re-ranking JSONL.")
@click.option("--split", type=click.Choice(SPLITS), default="dev", show_default=True, help="dev: the passages training held out.")
@click.option("--limit", type=click.IntRange(1), default=1000, show_default=True, help="Score the first N examples of the split.")
@click.option("--batch-size", type=click.IntRange(1), default=32, show_default=True)
@click.option("--threads", type=click.IntRange(1), help="ONNX Runtime intra-op threads.")
@click.option("--json", "json_path", type=OUTPUT_FILE, help="Also write the report as JSON.")
def eval_cmd(model, data, split, limit, batch_size, threads, json_path):
    """Teacher (coupled) and student (decoupled) accuracy of a checkpoint, export or engine."""
    from dtx.eval.evaluate import evaluate_model
    from dtx.report import emit, save_json

    quiet_transformers()
    r = evaluate_model(model, data, split, limit, batch_size, threads)
    emit(f"{r['kind']} {model} on {r['examples']} {split} examples of {data}", r.HEADERS, r.rows())
    click.echo(f"student and teacher predict the same {r.prediction} on {100 * r['agreement']:.1f}% of examples")
    if "no_answer_threshold" in r:
        t = r["no_answer_threshold"]
        click.echo(f"no-answer thresholds given a paragraph (calibrated at training; 0 if not): student {t['decoupled']:+.2f}, teacher {t['coupled']:+.2f}")
    save_json(json_path, r)


@click.command("eval-store")
@click.argument("store")
@click.option("--data", required=True, type=click.Path(dir_okay=False), help="QA data whose held-out questions are asked (SQuAD JSON / JSONL / Disfl-QA).")
@click.option("-k", "--candidates", "k", type=click.IntRange(1), default=20, show_default=True, help="BM25 candidates read per question.")
@click.option("--limit", type=click.IntRange(1), help="Ask only the first N held-out questions.")
@click.option("--engine", "engine_dir", type=click.Path(file_okay=False), help="Engine to read with (default: the one that built the store).")
@click.option("--threads", type=click.IntRange(1), help="ONNX Runtime intra-op threads.")
@click.option("--teacher/--no-teacher", default=True, show_default=True, help="Also read the candidates with the coupled teacher (the slow half); without it, compare by candidates_digest with an earlier teacher row.")
@click.option("--json", "json_path", type=OUTPUT_FILE, help="Also write the report as JSON.")
def eval_store(store, data, k, limit, engine_dir, threads, teacher, json_path):
    """End to end: BM25 top-k from STORE read by the student from cached passages, and by the coupled teacher on the same candidates."""
    from dtx.query.open_domain import open_domain_eval
    from dtx.report import emit, save_json

    quiet_transformers()
    r = open_domain_eval(store, data, k, limit, engine_dir, threads, teacher=teacher)
    readers = [("student, cached passages", r["student"])] + ([("coupled teacher, same candidates", r["teacher"])] if teacher else [])
    emit(
        f"{r['questions']} held-out questions of {data}, top {k} BM25 candidates from {store} (gold paragraph retrieved for {100 * r['gold_passage_retrieved']:.1f}%)",
        ["reader", "EM", "F1", "HasAns F1", "NoAns", "p50 ms/query", "p90 ms/query"],
        [[name, f"{m['exact']:.2f}", f"{m['f1']:.2f}", f"{m.get('HasAns_f1', float('nan')):.2f}", f"{m.get('NoAns_f1', float('nan')):.2f}", f"{m['p50_ms']:.1f}", f"{m['p90_ms']:.1f}"]
         for name, m in readers],
    )  # fmt: skip
    t, zero = r["no_answer_threshold"], r["at_threshold_0"]
    click.echo("no-answer thresholds (calibrated at training; 0 if not): " + ", ".join(
        f"{who} {t[who]:+.2f} (F1 {zero[who]['f1']:.2f} at 0)" for who in ("student", "teacher") if zero[who] is not None))  # fmt: skip
    if teacher:
        click.echo(f"same answer on {100 * r['agreement']:.1f}% of questions")
    click.echo(f"candidates digest {r['candidates_digest']} (equal digests: the same candidates for every question)")
    save_json(json_path, r)
