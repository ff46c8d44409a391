"""Commands that make and describe models: decouple, info, export, build-engine, plan."""

from __future__ import annotations

import click

from dtx.commands.common import OUTPUT_FILE, quiet_transformers
from dtx.cost import BYTES_PER_VALUE
from dtx.engines.manifest import BACKENDS, DEVICES
from dtx.model.int8 import SCHEMES
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
    emit(
        f"parity vs PyTorch (fp32, tolerance {manifest.parity['tolerance_max_abs']:g} max-abs), fresh random inputs",
        ["check", "max-abs", "max-rel", "comparisons"],
        manifest.parity_rows(),
    )
    secs = manifest.seconds
    click.echo(
        f"wrote {out_dir} in {time.perf_counter() - start:.1f} s "
        f"(input {secs['input']:.1f} s, cross {secs['cross']:.1f} s, coupled {secs['coupled']:.1f} s, parity {secs['parity']:.1f} s)"
    )


@click.command("build-engine")
@click.argument("export_dir", required=False, type=click.Path(file_okay=False))
@click.option("--backend", type=click.Choice(BACKENDS), default="ort", show_default=True, help="Engine backend (aoti: torch.export + AOTInductor, compiled for this machine's CPU or GPU).")
@click.option("--fp16", is_flag=True, help="Float16 graphs (LayerNorm, softmax, mask kept in fp32).")
@click.option("--int8", is_flag=True, help="INT8: dynamic on ORT CPU (no calibration needed), Q/DQ for TensorRT and aoti (x86 CPU, PT2E; torchao==0.18.0) (both need --calib).")
@click.option("--int8-mode", type=click.Choice(["dynamic", "qdq"]), help="INT8 flavour (default: dynamic for ort, qdq for trt and aoti).")
@click.option("--calib", type=click.Path(dir_okay=False), help="Real pairs for Q/DQ calibration and for drift (JSONL, TSV or BIG-bench task); without it drift runs on random-token pairs.")
@click.option("--int8-keep-float", type=click.IntRange(0), default=0, show_default=True, help="Dynamic INT8: keep this many of each graph's most error-prone MatMuls (measured on --calib pairs) in float32.")
@click.option("--int8-scheme", type=click.Choice(list(SCHEMES)), help="Dynamic INT8: how weights and activations are quantized [default: the scheme the checkpoint was trained for (distill --qat-epochs), else per-channel-uint8].")
@click.option("--int8-smooth", type=click.FloatRange(0, 1), metavar="ALPHA", help="Dynamic INT8: SmoothQuant-style smoothing, activation outliers moved into the weights by per-channel scales from --calib pairs (alpha in [0, 1], e.g. 0.5) [default: off].")
@click.option("--drift-pairs", type=click.IntRange(1), default=500, show_default=True, help="Real pairs on which fp16/int8 drift is measured.")
@click.option("--threads", type=click.IntRange(1), help="ONNX Runtime intra-op threads (default: ORT's choice).")
@click.option("--device", type=click.Choice(DEVICES), default="cpu", show_default=True)
@click.option("--batch", type=click.IntRange(1), default=20, show_default=True, help="Passages per query served (TensorRT profile, aoti's served-shape packages).")
@click.option("--seq-q", type=click.IntRange(3), help="Question tokens served (TensorRT profile, CUDA graph captured at load, aoti's served-shape packages) [default: 32, at most the checkpoint's window].")
@click.option("--seq-p", type=click.IntRange(3), help="Passage tokens served [default: 150, at most the checkpoint's window].")
@click.option("-o", "--out", "out_dir", type=click.Path(file_okay=False), help="Engine directory (default: EXPORT_DIR-BACKEND-PRECISION).")
@click.option("--verbose", "-v", is_flag=True, help="Print fused and quantized op counts per graph.")
def build_engine_cmd(export_dir, backend, fp16, int8, int8_mode, calib, int8_keep_float, int8_scheme, int8_smooth, drift_pairs, threads, device, batch, seq_q, seq_p, out_dir, verbose):
    """Build an engine directory (all three graphs, same treatment) from an export.

    EXPORT_DIR defaults to the one export in the working directory (what `dtx export CKPT_DIR` wrote there).
    """
    quiet_transformers()
    from dtx.artifacts import find_artifact
    from dtx.engines.build import BuildOptions, build_engine
    from dtx.report import emit

    if fp16 and int8:
        raise click.UsageError("--fp16 and --int8 are two precisions: pass one of them (or neither, for fp32)")
    precision = "fp16" if fp16 else "int8" if int8 else "fp32"
    opts = BuildOptions(backend=backend, precision=precision, int8_mode=int8_mode, calib=calib, int8_keep_float=int8_keep_float, int8_scheme=int8_scheme, int8_smooth=int8_smooth, drift_pairs=drift_pairs, threads=threads, device=device, batch=batch, seq_q=seq_q, seq_p=seq_p)
    if export_dir is None:
        export_dir = str(find_artifact("export"))
        click.echo(f"export: {export_dir} (the one in this directory)")
    out_dir = out_dir or f"{str(export_dir).rstrip('/')}-{backend}-{precision}"
    m = build_engine(export_dir, out_dir, opts)
    if verbose:
        fused = m.reports.get("fused_ops") or {}
        ops = sorted({op for counts in fused.values() for op in counts})
        emit("op counts per graph", ["graph", *ops], [[g, *(c.get(op, 0) for op in ops)] for g, c in fused.items()])
    v = m.verification
    if v["kind"] == "parity":
        click.echo(f"{backend} fp32 engine vs export: worst max-abs {v['worst_max_abs']:.2e} (tolerance {v['tolerance_max_abs']:g})")
    else:
        emit(
            f"{precision} drift vs fp32 export on {v['source']}",
            ["path", "max-abs", "same prediction"],
            [[k, v[k]["max_abs"], f"{100 * v[k]['agreement']:.1f}%"] for k in ("decoupled", "coupled")],
        )
    click.echo(f"wrote {out_dir} ({backend} {precision}{' ' + m.int8_mode if m.int8_mode else ''}) in {m.reports['build_seconds']:.1f} s")


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
