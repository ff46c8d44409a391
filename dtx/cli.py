"""The `dtx` command. Thin: each command parses options, calls one library function, prints.

A `DtxError` (bad input, missing or mismatched files) becomes one line on stderr and exit
status 1; heavy libraries are imported inside the commands so `dtx --help` is instant.
"""

from __future__ import annotations

import sys

import click

from dtx.errors import DtxError


class DtxGroup(click.Group):
    """Click group that prints user errors as one line instead of a traceback."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except DtxError as e:
            raise click.ClickException(str(e)) from None


def _quiet_transformers() -> None:
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


@click.group(cls=DtxGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="dtx")
def main() -> None:
    """dtx: decouple a cross-encoder, export it, build engines, cache passages, benchmark."""


@main.command()
@click.argument("model_dir", type=click.Path(file_okay=False))
@click.option("--split", "-n", type=int, required=True, help="Layers in the input component (0..L).")
@click.option("--compress", "-k", type=int, default=1, show_default=True, help="Compression ratio k (hidden -> hidden/k); 1 = none.")
@click.option("--task", type=click.Choice(["qa", "pair"]), help="Head to add to a bare encoder (read from the model otherwise).")
@click.option("--num-labels", type=int, help="Classes of a fresh pair head.")
@click.option("--max-question-len", type=int, default=64, show_default=True, help="Question segment tokens, specials included.")
@click.option("--max-passage-len", type=int, help="Passage window tokens (default: the positions left after the question).")
@click.option("--deformer", is_flag=True, help="Do not re-add position/segment embeddings at the split (DeFormer variant).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for fresh heads and the compressor.")
@click.option("-o", "--out", "out_dir", type=click.Path(file_okay=False), required=True, help="Checkpoint directory to write.")
@click.option("--overwrite", is_flag=True, help="Replace an existing checkpoint directory (atomically).")
def decouple(model_dir, split, compress, task, num_labels, max_question_len, max_passage_len, deformer, seed, out_dir, overwrite):
    """Split a fine-tuned Hugging Face model (local MODEL_DIR) into a decoupled checkpoint."""
    _quiet_transformers()
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
        cross_embeddings=not deformer,
        seed=seed,
        overwrite=overwrite,
    )
    c = ckpt.config
    click.echo(
        f"wrote {out_dir}: {c.model_type} {c.task}, split {c.split}/{c.cross_layers}, "
        f"rep_dim {c.rep_dim}{f' ({c.compress}x)' if c.compress > 1 else ''}"
    )


@main.command()
@click.argument("ckpt_dir", type=click.Path(file_okay=False))
@click.option("--seq-q", type=int, default=32, show_default=True, help="Question tokens for the cost of one query.")
@click.option("--seq-p", type=int, default=150, show_default=True, help="Passage tokens for the cost of one query.")
@click.option("--candidates", "-K", type=int, default=20, show_default=True, help="Cached passages per query.")
@click.option("--dtype", type=click.Choice(["fp32", "fp16", "int8"]), default="fp16", show_default=True, help="Cache value type.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Also write the report as JSON.")
def info(ckpt_dir, seq_q, seq_p, candidates, dtype, json_path):
    """Describe a decoupled checkpoint: parts, sizes, and the cost of one query (DESIGN.md section 5)."""
    _quiet_transformers()
    from dtx.model.checkpoint import load_checkpoint
    from dtx.model.info import describe
    from dtx.report import emit, save_json

    report = describe(load_checkpoint(ckpt_dir), seq_q, seq_p, candidates, dtype)
    emit("checkpoint", ["field", "value"], list(report.summary.items()))
    emit("parameters", ["component", "count"], list(report.parameters.items()))
    c = report.cost
    emit(
        f"one query: {candidates} candidates, question {seq_q} + passage {seq_p} tokens",
        ["measure", "coupled", "decoupled", "ratio"],
        [
            ["token-layers", c.coupled_token_layers, c.decoupled_token_layers, f"{c.token_layer_ratio:.2f}x"],
            ["GFLOP", c.coupled_flops / 1e9, c.decoupled_flops / 1e9, f"{c.flop_ratio:.2f}x"],
            ["index GFLOP / passage", "-", c.passage_index_flops / 1e9, "offline"],
            [f"cache bytes / passage ({dtype})", "-", c.cache_bytes_per_passage, "offline"],
        ],
    )
    save_json(json_path, report.to_dict())


@main.command("export")
@click.argument("path", type=click.Path(file_okay=False))
@click.option("-o", "--out", "out_dir", type=click.Path(file_okay=False), help="Export directory (default: PATH-onnx).")
@click.option("--opset", type=int, default=18, show_default=True, help="ONNX opset (17 or newer).")
@click.option("--check", is_flag=True, help="Re-validate the export directory PATH instead of exporting.")
@click.option("--ckpt", "ckpt_dir", type=click.Path(file_okay=False), help="With --check: also check against this checkpoint.")
def export_cmd(path, out_dir, opset, check, ckpt_dir):
    """Export checkpoint PATH to input.onnx, cross.onnx, coupled.onnx + manifest (or --check an export)."""
    _quiet_transformers()
    from dtx.report import emit

    if check:
        from dtx.export.check import check_export

        manifest = check_export(path, ckpt_dir)
        d = manifest["decoupling"]
        click.echo(
            f"{path}: OK — 3 graphs, split {d['split']}/{d['num_layers'] - d['split']}, rep_dim {manifest['rep_dim']}, "
            f"opset {manifest['opset']}, worst parity {manifest['parity']['worst_max_abs']:.2e}"
        )
        return
    import time

    from dtx.export.exporter import export_checkpoint

    out_dir = out_dir or f"{str(path).rstrip('/')}-onnx"
    start = time.perf_counter()
    manifest = export_checkpoint(path, out_dir, opset)
    rows = {}
    for r in manifest["parity"]["results"]:
        row = rows.setdefault(r["check"], [r["check"], 0.0, 0.0, 0])
        row[1], row[2], row[3] = max(row[1], r["max_abs"]), max(row[2], r["max_rel"]), row[3] + 1
    emit(
        f"parity vs PyTorch (fp32, tolerance {manifest['parity']['tolerance_max_abs']:g} max-abs), fresh random inputs",
        ["check", "max-abs", "max-rel", "comparisons"],
        list(rows.values()),
    )
    secs = manifest["seconds"]
    click.echo(
        f"wrote {out_dir} in {time.perf_counter() - start:.1f} s "
        f"(input {secs['input']:.1f} s, cross {secs['cross']:.1f} s, coupled {secs['coupled']:.1f} s, parity {secs['parity']:.1f} s)"
    )


@main.command("build-engine")
@click.argument("export_dir", type=click.Path(file_okay=False))
@click.option("--backend", type=click.Choice(["ort", "trt", "torch"]), default="ort", show_default=True, help="Engine backend.")
@click.option("--fp16", "precision", flag_value="fp16", help="Float16 graphs (LayerNorm, softmax, mask kept in fp32).")
@click.option("--int8", "precision", flag_value="int8", help="INT8 (needs --calib): dynamic on ORT CPU, Q/DQ for TensorRT.")
@click.option("--int8-mode", type=click.Choice(["dynamic", "qdq"]), help="INT8 flavour (default: dynamic for ort, qdq for trt).")
@click.option("--calib", type=click.Path(dir_okay=False), help="Real pairs for INT8 calibration and drift (JSONL, TSV or BIG-bench task).")
@click.option("--drift-pairs", type=int, default=500, show_default=True, help="Real pairs on which fp16/int8 drift is measured.")
@click.option("--threads", type=int, help="ONNX Runtime intra-op threads (default: ORT's choice).")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True)
@click.option("--batch", type=int, default=20, show_default=True, help="TensorRT profile: passages per query.")
@click.option("--seq-q", type=int, default=32, show_default=True, help="TensorRT profile: question length served.")
@click.option("--seq-p", type=int, default=150, show_default=True, help="TensorRT profile: passage length served.")
@click.option("-o", "--out", "out_dir", type=click.Path(file_okay=False), help="Engine directory (default: EXPORT_DIR-BACKEND-PRECISION).")
@click.option("--verbose", "-v", is_flag=True, help="Print fused and quantized op counts per graph.")
def build_engine_cmd(export_dir, backend, precision, int8_mode, calib, drift_pairs, threads, device, batch, seq_q, seq_p, out_dir, verbose):
    """Build an engine directory (all three graphs, same treatment) from an export."""
    _quiet_transformers()
    from dtx.engines.build import BuildOptions, build_engine
    from dtx.report import emit

    precision = precision or "fp32"
    opts = BuildOptions(backend, precision, int8_mode, calib, drift_pairs=drift_pairs, threads=threads, device=device, batch=batch, seq_q=seq_q, seq_p=seq_p)
    out_dir = out_dir or f"{str(export_dir).rstrip('/')}-{backend}-{precision}"
    m = build_engine(export_dir, out_dir, opts)
    if verbose:
        ops = sorted({op for counts in m["fused_ops"].values() for op in counts})
        emit("op counts per graph", ["graph", *ops], [[g, *(c.get(op, 0) for op in ops)] for g, c in m["fused_ops"].items()])
    if "parity" in m:
        click.echo(f"fp32 engine vs export: worst max-abs {m['parity']['worst_max_abs']:.2e} (tolerance {m['parity']['tolerance_max_abs']:g})")
    if "drift" in m:
        emit(
            f"{precision} drift vs fp32 export on {m['drift']['decoupled']['pairs']} real pairs",
            ["path", "max-abs", "same prediction"],
            [[k, v["max_abs"], f"{100 * v['agreement']:.1f}%"] for k, v in m["drift"].items()],
        )
    click.echo(f"wrote {out_dir} ({backend} {precision}{' ' + m['int8_mode'] if m['int8_mode'] else ''}) in {m['build_seconds']:.1f} s")


@main.command()
@click.argument("model_dir", type=click.Path(file_okay=False))
@click.option("--task", type=click.Choice(["pair"]), default="pair", show_default=True, help="Task head to train (QA lands with the training issue).")
@click.option("--data", required=True, type=click.Path(dir_okay=False), help="Labelled pairs: JSONL, TSV or a BIG-bench task (VitaminC).")
@click.option("--epochs", type=float, default=1.0, show_default=True)
@click.option("--batch-size", type=int, default=32, show_default=True)
@click.option("--lr", type=float, default=5e-5, show_default=True)
@click.option("--max-len", type=int, default=128, show_default=True, help="Pair tokens (passage truncated).")
@click.option("--train-limit", type=int, help="Train on the first N shuffled training pairs.")
@click.option("--dev-limit", type=int, default=2000, show_default=True, help="Evaluate on at most N held-out pairs.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("-o", "--out", "out_dir", required=True, type=click.Path(file_okay=False))
@click.option("--overwrite", is_flag=True)
def finetune(model_dir, task, data, epochs, batch_size, lr, max_len, train_limit, dev_limit, seed, out_dir, overwrite):
    """Fine-tune a coupled teacher on labelled pairs (dev split holds out whole passages)."""
    _quiet_transformers()
    from dtx.train.finetune import FinetuneConfig, finetune_pair

    cfg = FinetuneConfig(epochs, batch_size, lr, max_len=max_len, train_limit=train_limit, dev_limit=dev_limit, seed=seed)
    r = finetune_pair(model_dir, data, out_dir, cfg, overwrite=overwrite)
    click.echo(
        f"wrote {out_dir}: {r['train_pairs']} training pairs, {r['steps']} steps in {r['train_seconds']:.0f} s; "
        f"dev ({r['dev']['pairs']} pairs, held-out passages): accuracy {r['dev']['accuracy']:.4f}, macro-F1 {r['dev']['macro_f1']:.4f}"
    )


@main.command()
@click.argument("ckpt_dir", type=click.Path(file_okay=False))
@click.option("--data", required=True, type=click.Path(dir_okay=False), help="Labelled pairs (JSONL, TSV or BIG-bench VitaminC).")
@click.option("--temperature", "-T", type=float, default=2.0, show_default=True)
@click.option("--alpha", "-a", type=float, default=0.5, show_default=True, help="Weight of CE with labels (1 - a on the KL term).")
@click.option("--epochs", type=int, default=1, show_default=True, help="Phase-2 (joint) epochs.")
@click.option("--phase1-epochs", type=int, default=1, show_default=True, help="Autoencoder epochs with compression (0: phase 2 only).")
@click.option("--pca-init", is_flag=True, help="Start the compressor from principal components of real layer-N states.")
@click.option("--labels-only", is_flag=True, help="Ablation: plain fine-tuning of the decoupled model, no teacher.")
@click.option("--batch-size", type=int, default=16, show_default=True)
@click.option("--lr", type=float, default=5e-5, show_default=True)
@click.option("--train-limit", type=int, help="Train on the first N shuffled training pairs.")
@click.option("--dev-limit", type=int, default=1000, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("-o", "--out", "out_dir", type=click.Path(file_okay=False), help="Where to write the student (default: CKPT_DIR, replaced atomically).")
def distill(ckpt_dir, data, temperature, alpha, epochs, phase1_epochs, pca_init, labels_only, batch_size, lr, train_limit, dev_limit, seed, out_dir):
    """Distil the decoupled student from its coupled teacher; resumes a killed run from its last epoch."""
    _quiet_transformers()
    from dtx.train.distill import DistillConfig
    from dtx.train.distill import distill as run

    cfg = DistillConfig(temperature, alpha, epochs, phase1_epochs, pca_init, batch_size, lr, train_limit=train_limit, dev_limit=dev_limit, labels_only=labels_only, seed=seed)
    r = run(ckpt_dir, data, cfg, out_dir)
    f = r["final"]
    click.echo(
        f"wrote {out_dir or ckpt_dir}: dev ({r['dev_pairs']} pairs) student accuracy {f['student']['accuracy']:.4f} "
        f"(macro-F1 {f['student']['macro_f1']:.4f}), teacher {f['teacher']['accuracy']:.4f}, agreement {f['agreement']:.4f}"
    )


def _human_bytes(n: float) -> str:
    return f"{n:.3e} B ({n / 1e12:.3g} TB, {n / 2**40:.3g} TiB)"


@main.command()
@click.option("--passages", type=int, required=True, help="Passages to cache (N).")
@click.option("--seq-p", type=int, default=150, show_default=True, help="Tokens per passage.")
@click.option("--hidden", type=int, default=768, show_default=True, help="Hidden size of the encoder.")
@click.option("--compress", "-k", type=int, default=1, show_default=True, help="Compression ratio (rep_dim = hidden / k).")
@click.option("--dtype", type=click.Choice(["fp32", "fp16", "int8"]), default="fp16", show_default=True, help="Cache value type.")
@click.option("--layers", type=int, help="L, for the per-query compute (with --split).")
@click.option("--split", type=int, help="N, for the per-query compute (with --layers).")
@click.option("--intermediate", type=int, help="Feed-forward width (default 4 x hidden).")
@click.option("--seq-q", type=int, default=32, show_default=True)
@click.option("--candidates", "-K", type=int, default=20, show_default=True)
@click.option("--index-rate", type=float, help="Measured passages/s of indexing (or --bench-json).")
@click.option("--bench-json", type=click.Path(dir_okay=False, exists=True), help="A `dtx bench --json` report to take the indexing rate from.")
def plan(passages, seq_p, hidden, compress, dtype, layers, split, intermediate, seq_q, candidates, index_rate, bench_json):
    """Storage and per-query compute of a deployment (DESIGN.md section 5), with units."""
    import json

    from dtx.cost import EncoderShape, query_cost, storage_plan
    from dtx.errors import ConfigError
    from dtx.report import emit

    if compress < 1 or hidden % compress:
        raise ConfigError(f"compression ratio {compress} does not divide the hidden size {hidden}")
    rep = hidden // compress
    st = storage_plan(passages, seq_p, rep, dtype)
    rows = [["representation", f"{seq_p} tokens x {rep} values x {dtype} per passage"], ["values", _human_bytes(st.value_bytes)]]
    if st.scale_bytes:
        rows += [["int8 scales (fp32 per token)", _human_bytes(st.scale_bytes)], ["total", _human_bytes(st.total_bytes)]]
    if bench_json:
        rows_ = json.loads(open(bench_json).read())["rows"]
        index_rate = 1e3 / rows_[0]["index_ms_per_passage"]
    if index_rate:
        secs = passages / index_rate
        rows.append(["index time", f"{secs:.3e} s ({secs / 3600:.3g} h) at {index_rate:.3g} passages/s, one worker"])
    emit(f"storage for {passages:,} passages", ["what", "amount"], rows)
    if layers is not None and split is not None:
        if not 0 <= split <= layers:
            raise ConfigError(f"split {split} is outside 0..{layers}; choose --split between 0 and {layers}")
        c = query_cost(EncoderShape(layers, hidden, intermediate or 4 * hidden, rep), split, seq_q, seq_p, candidates, dtype)
        emit(
            f"one query: {candidates} candidates, question {seq_q} + passage {seq_p} tokens, split {split}/{layers - split}",
            ["measure", "coupled", "decoupled", "ratio"],
            [
                ["token-layers", c.coupled_token_layers, c.decoupled_token_layers, f"{c.token_layer_ratio:.2f}x"],
                ["GFLOP", c.coupled_flops / 1e9, c.decoupled_flops / 1e9, f"{c.flop_ratio:.2f}x"],
            ],
        )


def _int_list(ctx, param, value: str | None) -> list[int] | None:
    if value is None:
        return None
    try:
        return [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise click.BadParameter(f"expected comma-separated integers, got {value!r}") from None


@main.command()
@click.argument("target", required=False, type=click.Path(file_okay=False))
@click.option("--arch", help="Random-weight preset to build when no TARGET is given (bert-base, bert-large, electra-base, electra-small, minilm-l6).")
@click.option("--split", "-n", "splits", callback=_int_list, help="Split N, or a comma list for a sweep (e.g. 1,3,5,7,9,11).")
@click.option("--compress", "-k", type=int, default=1, show_default=True, help="Compression ratio of models decoupled for the bench.")
@click.option("--candidates", "-K", callback=_int_list, default="20", show_default=True, help="Passages per query, or a comma list for a sweep.")
@click.option("--seq-q", type=int, default=32, show_default=True, help="Question tokens (specials included).")
@click.option("--seq-p", type=int, default=150, show_default=True, help="Passage tokens (specials included).")
@click.option("--backend", type=click.Choice(["ort", "trt", "torch"]), default="ort", show_default=True)
@click.option("--precision", type=click.Choice(["fp32", "fp16", "int8"]), default="fp32", show_default=True)
@click.option("--calib", type=click.Path(dir_okay=False), help="Real pairs for INT8 calibration (required with --precision int8).")
@click.option("--runs", "-r", type=int, default=20, show_default=True, help="Timed queries per configuration.")
@click.option("--warmup", type=int, default=2, show_default=True)
@click.option("--threads", type=int, help="ONNX Runtime intra-op threads (default: one per core).")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True)
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Write the full report (every timing) as JSON.")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False), help="Write a PNG of latency and speed-up vs split (or K).")
def bench(target, arch, splits, compress, candidates, seq_q, seq_p, backend, precision, calib, runs, warmup, threads, device, json_path, plot_path):
    """Per-query latency, decoupled vs coupled, on an engine, export, checkpoint or --arch preset."""
    _quiet_transformers()
    from dtx.bench.run import BenchConfig, plot, run_bench, summary_rows
    from dtx.report import emit, save_json

    if target is None and arch is None:
        raise click.UsageError("pass TARGET (engine, export or checkpoint directory) or --arch PRESET")
    cfg = BenchConfig(target, arch, splits or [5], compress, candidates, seq_q, seq_p, backend, precision, calib, runs, warmup, threads, device)
    if target is not None and splits is None:
        cfg.splits = [None]
    report = run_bench(cfg)
    if not report["rows"]:
        click.echo("interrupted before any configuration finished")
        return
    headers, rows = summary_rows(report)
    note = " (INTERRUPTED: partial)" if report["interrupted"] or any(r.get("interrupted") for r in report["rows"]) else ""
    emit(f"{report['source']}, {backend} {precision}, seq-q {seq_q} + seq-p {seq_p}, {runs} queries{note}", headers, rows)
    if any("headline_speedup" in r for r in report["rows"]):
        for r in report["rows"]:
            click.echo(f"headline: decoupled {precision} vs coupled fp32 at {r['layers']}, K={r['candidates']}: {r['headline_speedup']:.2f}x")
    save_json(json_path, report)
    if plot_path:
        plot(report, plot_path)
        click.echo(f"wrote {plot_path}")


if __name__ == "__main__":
    sys.exit(main())
