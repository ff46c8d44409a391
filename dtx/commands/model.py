"""Commands that make and describe models: decouple, info, export, plan."""

from __future__ import annotations

import click

from dtx.commands.common import OUTPUT_FILE, quiet_transformers
from dtx.cost import BYTES_PER_VALUE
from dtx.task import TASKS


@click.command()
@click.argument("model_dir", type=click.Path(file_okay=False))
@click.option("--split", "-n", type=click.IntRange(0), required=True, help="Layers in the input component (0..L).")
@click.option("--compress", "-k", type=click.IntRange(1), default=1, show_default=True, help="Compression ratio k (hidden -> hidden/k); 1 = none.")
@click.option("--task", type=click.Choice(TASKS), help="Head to add to a bare encoder (read from the model otherwise).")
@click.option("--num-labels", type=click.IntRange(1), help="Classes of a fresh pair head.")
@click.option("--max-question-len", type=click.IntRange(3), default=64, show_default=True, help="Question segment tokens, specials included.")
@click.option("--max-passage-len", type=click.IntRange(3), help="Passage window tokens (default: the positions left after the question).")
@click.option("--doc-stride", type=click.IntRange(0), help="Tokens shared by consecutive passage windows (default: the teacher's, else 128).")
@click.option("--deformer", is_flag=True, help="Do not re-add position/segment embeddings at the split (DeFormer variant).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for fresh heads and the compressor.")
@click.option("-o", "--out", "out_dir", type=click.Path(file_okay=False), required=True, help="Checkpoint directory to write.")
@click.option("--overwrite", is_flag=True, help="Replace an existing checkpoint directory (atomically).")
def decouple(model_dir, split, compress, task, num_labels, max_question_len, max_passage_len, doc_stride, deformer, seed, out_dir, overwrite):
    """Split a fine-tuned Hugging Face model (local MODEL_DIR) into a decoupled checkpoint."""
    quiet_transformers()
    from dtx.model.decouple import decouple as run

    ckpt = run(
        model_dir,
        out_dir,
        split,
        compress,
        task,
        num_labels,
        max_question_len,
        max_passage_len,
        doc_stride,
        cross_embeddings=not deformer,
        seed=seed,
        overwrite=overwrite,
    )
    c = ckpt.config
    click.echo(
        f"wrote {out_dir}: {c.model_type} {c.task}, split {c.split}/{c.cross_layers}, "
        f"rep_dim {c.rep_dim}{f' ({c.compress}x)' if c.compress > 1 else ''}"
    )


@click.command()
@click.argument("ckpt_dir", type=click.Path(file_okay=False))
@click.option("--seq-q", type=click.IntRange(1), help="Question tokens for the cost of one query [default: 32, at most the checkpoint's window].")
@click.option("--seq-p", type=click.IntRange(1), help="Passage tokens for the cost of one query [default: 150, at most the checkpoint's window].")
@click.option("--candidates", "-K", type=click.IntRange(1), default=20, show_default=True, help="Cached passages per query.")
@click.option("--dtype", type=click.Choice(list(BYTES_PER_VALUE)), default="fp16", show_default=True, help="Cache value type.")
@click.option("--json", "json_path", type=OUTPUT_FILE, help="Also write the report as JSON.")
def info(ckpt_dir, seq_q, seq_p, candidates, dtype, json_path):
    """Describe a decoupled checkpoint: parts, sizes, and the cost of one query (docs/design.md, "Cost model")."""
    quiet_transformers()
    from dtx.engines.build import BuildOptions, fit_serve_shape
    from dtx.model.checkpoint import load_checkpoint
    from dtx.model.info import describe
    from dtx.report import emit, save_json

    ckpt = load_checkpoint(ckpt_dir)
    shape = fit_serve_shape(BuildOptions(seq_q=seq_q, seq_p=seq_p), ckpt.config)  # the rule build-engine serves by: no length past the windows
    seq_q, seq_p = shape.seq_q, shape.seq_p
    report = describe(ckpt, seq_q, seq_p, candidates, dtype)
    emit("checkpoint", ["field", "value"], list(report.summary.items()))
    emit("parameters", ["component", "count"], list(report.parameters.items()))
    emit(f"one query: {candidates} candidates, question {seq_q} + passage {seq_p} tokens", report.cost.HEADERS, report.cost.rows(dtype))
    save_json(json_path, report.to_dict())


@click.command("export")
@click.argument("path", type=click.Path(file_okay=False))
@click.option("-o", "--out", "out_dir", type=click.Path(file_okay=False), help="Export directory (default: PATH-onnx).")
@click.option("--opset", type=click.IntRange(17), default=18, show_default=True, help="ONNX opset (17 or newer).")
@click.option("--check", is_flag=True, help="Re-validate the export directory PATH instead of exporting.")
@click.option("--ckpt", "ckpt_dir", type=click.Path(file_okay=False), help="With --check: also check against this checkpoint.")
@click.option("--overwrite", is_flag=True, help="Replace an existing export in OUT (atomically; never a directory holding other files).")
def export_cmd(path, out_dir, opset, check, ckpt_dir, overwrite):
    """Export checkpoint PATH to input.onnx, cross.onnx, coupled.onnx + manifest (or --check an export)."""
    quiet_transformers()
    from dtx.report import emit

    if check:
        from dtx.export.check import check_export

        manifest = check_export(path, ckpt_dir)
        d = manifest.decoupling
        click.echo(
            f"{path}: OK — 3 graphs, split {d.split}/{d.cross_layers}, rep_dim {manifest.rep_dim}, "
            f"opset {manifest.opset}, worst parity {manifest.parity['worst_max_abs']:.2e}"
        )
        return
    import time

    from dtx.export.exporter import export_checkpoint

    out_dir = out_dir or f"{str(path).rstrip('/')}-onnx"
    start = time.perf_counter()
    manifest = export_checkpoint(path, out_dir, opset, overwrite=overwrite)
    rows = {}
    for r in manifest.parity["results"]:
        row = rows.setdefault(r["check"], [r["check"], 0.0, 0.0, 0])
        row[1], row[2], row[3] = max(row[1], r["max_abs"]), max(row[2], r["max_rel"]), row[3] + 1
    emit(
        f"parity vs PyTorch (fp32, tolerance {manifest.parity['tolerance_max_abs']:g} max-abs), fresh random inputs",
        ["check", "max-abs", "max-rel", "comparisons"],
        list(rows.values()),
    )
    secs = manifest.seconds
    click.echo(
        f"wrote {out_dir} in {time.perf_counter() - start:.1f} s "
        f"(input {secs['input']:.1f} s, cross {secs['cross']:.1f} s, coupled {secs['coupled']:.1f} s, parity {secs['parity']:.1f} s)"
    )


def _human_bytes(n: float) -> str:
    return f"{n:.3e} B ({n / 1e12:.3g} TB, {n / 2**40:.3g} TiB)"


@click.command()
@click.option("--passages", type=click.IntRange(1), required=True, help="Passages to cache (N).")
@click.option("--seq-p", type=click.IntRange(1), default=150, show_default=True, help="Tokens per passage.")
@click.option("--hidden", type=click.IntRange(1), default=768, show_default=True, help="Hidden size of the encoder.")
@click.option("--compress", "-k", type=click.IntRange(1), default=1, show_default=True, help="Compression ratio (rep_dim = hidden / k).")
@click.option("--dtype", type=click.Choice(list(BYTES_PER_VALUE)), default="fp16", show_default=True, help="Cache value type.")
@click.option("--layers", type=click.IntRange(1), help="L, for the per-query compute (with --split).")
@click.option("--split", type=click.IntRange(0), help="N, for the per-query compute (with --layers).")
@click.option("--intermediate", type=click.IntRange(1), help="Feed-forward width (default 4 x hidden).")
@click.option("--seq-q", type=click.IntRange(1), default=32, show_default=True)
@click.option("--candidates", "-K", type=click.IntRange(1), default=20, show_default=True)
@click.option("--index-rate", type=click.FloatRange(0, min_open=True), help="Measured passages/s of indexing (or --bench-json).")
@click.option("--bench-json", type=click.Path(dir_okay=False, exists=True), help="A `dtx index --json` or `dtx bench --json` report to take the indexing rate from.")
def plan(passages, seq_p, hidden, compress, dtype, layers, split, intermediate, seq_q, candidates, index_rate, bench_json):
    """Storage and per-query compute of a deployment (docs/design.md, "Cost model"), with units."""
    from dtx.cost import EncoderShape, check_compress, check_split, query_cost, storage_plan
    from dtx.report import emit, read_index_rate

    check_compress(compress, hidden)
    rep = hidden // compress
    st = storage_plan(passages, seq_p, rep, dtype)
    rows = [["representation", f"{seq_p} tokens x {rep} values x {dtype} per passage"], ["values", _human_bytes(st.value_bytes)]]
    if st.scale_bytes:
        rows += [["int8 scales (fp32 per token)", _human_bytes(st.scale_bytes)], ["total", _human_bytes(st.total_bytes)]]
    if bench_json:
        index_rate = read_index_rate(bench_json)
    if index_rate:
        secs = passages / index_rate
        rows.append(["index time", f"{secs:.3e} s ({secs / 3600:.3g} h) at {index_rate:.3g} passages/s, one worker"])
    emit(f"storage for {passages:,} passages", ["what", "amount"], rows)
    if layers is not None and split is not None:
        check_split(split, layers)
        c = query_cost(EncoderShape(layers, hidden, intermediate or 4 * hidden, rep), split, seq_q, seq_p, candidates, dtype)
        emit(f"one query: {candidates} candidates, question {seq_q} + passage {seq_p} tokens, split {split}/{layers - split}", c.HEADERS, c.rows())
