"""Commands over a passage store: index, answer, rerank, check-store."""

from __future__ import annotations

import click

from dtx.commands.common import OUTPUT_FILE, check_store_writable, quiet_transformers
from dtx.data.splits import SPLITS
from dtx.store.quantize import DTYPES
from dtx.task import Task


@click.command()
@click.argument("corpus", type=click.Path(dir_okay=False))
@click.option("--engine", "engine_dir", required=True, type=click.Path(file_okay=False), help="Engine directory whose input component encodes the passages.")
@click.option("-o", "--out", "store", required=True, help="Store to create or resume (a path, or an s3:// / gs:// URI).")
@click.option("--dtype", type=click.Choice(DTYPES), default="fp16", show_default=True, help="Stored value type (int8: a scale per token).")
@click.option("--batch", type=click.IntRange(1), default=32, show_default=True, help="Windows per input-component call (length-bucketed).")
@click.option("--chunk", type=click.IntRange(1), default=512, show_default=True, help="Passages per atomic commit (the unit a kill can lose).")
@click.option("--limit", type=click.IntRange(1), help="Index only the first N passages of the corpus.")
@click.option("--split", type=click.Choice(SPLITS), default="all", show_default=True, help="dev: only the passages training held out (by the same hash finetune and distill split by).")
@click.option("--threads", type=click.IntRange(1), help="ONNX Runtime intra-op threads (per Ray actor with --ray).")
@click.option("--ray", "ray_address", is_flag=False, flag_value="local", default=None, help="Encode on Ray: `--ray` starts a local instance, `--ray ADDRESS` joins a cluster.")
@click.option("--json", "json_path", type=OUTPUT_FILE, help="Also write the report (with passages/s) as JSON.")
def index(corpus, engine_dir, store, dtype, batch, chunk, limit, split, threads, ray_address, json_path):
    """Encode a corpus once and commit the passage representations; resumes a killed run."""
    from dtx.report import emit, save_json
    from dtx.store.indexer import index_corpus

    quiet_transformers()
    check_store_writable(store, "-o")
    on_ray = ray_address is not None  # `--ray` alone: a local Ray instance
    r = index_corpus(corpus, engine_dir, store, dtype=dtype, batch=batch, chunk=chunk, limit=limit, threads=threads, ray_address=ray_address if ray_address != "local" else None, use_ray=on_ray, split=split)
    emit(f"indexed into {store}", ["field", "value"], r.rows())
    save_json(json_path, {**r.to_dict(), "store": store})


def _query_options(f):
    for option in reversed(
        [
            click.argument("store"),
            click.argument("query"),
            click.option("--engine", "engine_dir", type=click.Path(file_okay=False), help="Engine to read the store with (default: the one that built it)."),
            click.option("-k", "--candidates", "k", type=click.IntRange(1), default=20, show_default=True, help="BM25 candidates to score."),
            click.option("--ids", callback=lambda ctx, param, value: _id_list(value), help="Comma-separated passage ids to score instead of BM25's candidates."),
            click.option("--top", type=click.IntRange(1), default=5, show_default=True, help="Rows to print."),
            click.option("--threads", type=click.IntRange(1)),
            click.option("--json", "json_path", type=OUTPUT_FILE, help="Also write the result as JSON."),
        ]
    ):
        f = option(f)
    return f


def _print_result(result, json_path: str | None, top: int, qa: bool) -> None:
    from dataclasses import asdict

    from dtx.report import emit, save_json

    rows = [[i + 1, c.id, round(c.score, 4), "" if c.retrieval_score is None else round(c.retrieval_score, 3), (c.answer or "(no answer)") if qa else c.label] for i, c in enumerate(result.candidates[:top])]
    emit(result.query, ["rank", "passage", "score", "bm25", "answer" if qa else "label"], rows)
    emit("stage timings", ["stage", "ms"], [[k, round(v, 2)] for k, v in result.timings_ms.items()])
    save_json(json_path, asdict(result))


@click.command()
@_query_options
def answer(store, query, engine_dir, k, ids, top, threads, json_path):
    """QA over a store: BM25 candidates, cached representations, answer spans with scores."""
    from dtx.query import QueryPipeline

    quiet_transformers()
    with QueryPipeline.open(store, engine_dir, threads) as pipe:
        result = pipe.answer(query, k, ids)
        _print_result(result, json_path, top, qa=True)
        best, threshold = pipe.answer_of(result), pipe.no_answer.threshold("retrieved", "decoupled")
        click.echo(f"answer: {best.answer!r} (passage {best.id}, score {best.score:.3f} > threshold {threshold:.2f})" if best else f"answer: none (no span scores above the no-answer threshold {threshold:.2f})")


@click.command()
@_query_options
@click.option("--label", help="Pair models: the class whose log-probability ranks (default: a positive-sounding one, else the last).")
def rerank(store, query, engine_dir, k, ids, top, threads, json_path, label):
    """Candidates (BM25's or --ids) ordered by the cross-encoder score."""
    from dtx.query import QueryPipeline

    quiet_transformers()
    with QueryPipeline.open(store, engine_dir, threads, label) as pipe:
        _print_result(pipe.rerank(query, k, ids), json_path, top, qa=pipe.task == Task.QA)


def _id_list(ids: str | None) -> list[str] | None:
    """--ids as a list; given but naming no id ("," or "") is an error, not a silent fall-back to BM25."""
    if ids is None:
        return None
    found = [i.strip() for i in ids.split(",") if i.strip()]
    if not found:
        raise click.BadParameter(f"{ids!r} names no passage id; pass comma-separated ids, or drop --ids to score BM25's candidates", param_hint="--ids")
    return found


@click.command("check-store")
@click.argument("store")
@click.option("--queries", type=click.Path(dir_okay=False), help="Real pairs (JSONL, TSV, BIG-bench): also compare store answers with on-the-fly ones.")
@click.option("--limit", type=click.IntRange(1), default=200, show_default=True, help="Queries to compare.")
@click.option("-k", "--candidates", "k", type=click.IntRange(1), default=20, show_default=True)
@click.option("--engine", "engine_dir", type=click.Path(file_okay=False), help="Engine to compare with (default: the one that built the store).")
@click.option("--json", "json_path", type=OUTPUT_FILE)
def check_store(store, queries, limit, k, engine_dir, json_path):
    """Integrity check of a store; with --queries, how often it gives the on-the-fly top answer / ranking."""
    from dtx.report import emit, save_json
    from dtx.store import PassageStore

    quiet_transformers()
    report = PassageStore.open(store).verify()
    emit(f"store {store}: integrity ok", ["field", "value"], list(report.items()))
    if queries:
        from dtx.query.agreement import store_agreement

        agree = store_agreement(store, queries, limit, k, engine_dir)
        emit("store vs on-the-fly representations", ["measure", "value"], list(agree.items()))
        report["agreement"] = agree
    save_json(json_path, report)
