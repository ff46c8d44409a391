"""The `dtx` command. Thin: each command parses options, calls one library function, prints.

A `DtxError` (bad input, missing or mismatched files) becomes one line on stderr and exit
status 1; heavy libraries are imported inside the commands so `dtx --help` is instant.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

INTERRUPTED = "interrupted (Ctrl-C); nothing unfinished was published, and the same command starts it again (a training run or an index resumes)"

try:  # a Ctrl-C while the imports load (seconds: torch) is one line and status 130, as it is later
    import click

    from dtx.cost import BYTES_PER_VALUE
    from dtx.data.splits import SPLITS
    from dtx.engines.manifest import BACKENDS, DEVICES, PRECISIONS
    from dtx.model.int8 import SCHEMES
    from dtx.errors import DtxError
    from dtx.store.quantize import DTYPES
    from dtx.task import TASKS, Task
    from dtx.train.config import DistillConfig, FinetuneConfig
except KeyboardInterrupt:
    sys.stderr.write(f"Error: {INTERRUPTED}\n")
    raise SystemExit(130) from None


class UsageLine(click.ClickException):
    """A bad option value, said in one line (click's usage block is three), with usage's exit status 2."""

    exit_code = 2


class Interrupted(click.ClickException):
    """Ctrl-C, said in one line with the shell's status for SIGINT (130), never a traceback."""

    exit_code = 130


class DtxGroup(click.Group):
    """Click group that prints user errors as one line instead of a traceback."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except DtxError as e:
            raise click.ClickException(str(e)) from None
        except KeyboardInterrupt:
            raise Interrupted(INTERRUPTED) from None
        except click.UsageError as e:
            where = f"dtx {e.ctx.info_name}" if e.ctx is not None and e.ctx.info_name else "dtx"
            raise UsageLine(f"{e.format_message()} (see `{where} --help`)") from None


class OutputFile(click.Path):
    """A file a command will write: its directory must exist now, not after an hour of work."""

    def __init__(self) -> None:
        super().__init__(dir_okay=False)

    def convert(self, value, param, ctx):
        value = super().convert(value, param, ctx)
        parent = Path(value).parent
        if not parent.is_dir():
            self.fail(f"{value}: directory {parent} does not exist; create it first", param, ctx)
        from dtx.atomic import check_writable

        try:
            check_writable(parent)  # tried for real: permission bits say nothing for root or a read-only mount
        except DtxError:
            self.fail(f"{value}: directory {parent} is not writable", param, ctx)
        return value


OUTPUT_FILE = OutputFile()


def _check_store_writable(uri: str, option: str) -> None:
    """A local store is written in place (commits append): its place must be writable before any work."""
    from dtx.atomic import check_writable
    from dtx.store.passage_store import local_path

    if (local := local_path(uri)) is not None:
        check_writable(local, option)


def _quiet_transformers() -> None:
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def _int_list(ctx, param, value: str | None) -> list[int] | None:
    if value is None:
        return None
    try:
        values = [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise click.BadParameter(f"expected comma-separated integers, got {value!r}") from None
    if not values:  # "," or "": an empty list given is never "the default"
        raise click.BadParameter(f"{value!r} holds no integer; pass e.g. 1,2,3")
    return values


@click.group(cls=DtxGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="dtx")
def main() -> None:
    """dtx: decouple a cross-encoder, export it, build engines, cache passages, benchmark."""


@main.command()
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


@main.command()
@click.argument("ckpt_dir", type=click.Path(file_okay=False))
@click.option("--seq-q", type=click.IntRange(1), help="Question tokens for the cost of one query [default: 32, at most the checkpoint's window].")
@click.option("--seq-p", type=click.IntRange(1), help="Passage tokens for the cost of one query [default: 150, at most the checkpoint's window].")
@click.option("--candidates", "-K", type=click.IntRange(1), default=20, show_default=True, help="Cached passages per query.")
@click.option("--dtype", type=click.Choice(list(BYTES_PER_VALUE)), default="fp16", show_default=True, help="Cache value type.")
@click.option("--json", "json_path", type=OUTPUT_FILE, help="Also write the report as JSON.")
def info(ckpt_dir, seq_q, seq_p, candidates, dtype, json_path):
    """Describe a decoupled checkpoint: parts, sizes, and the cost of one query (docs/design.md, "Cost model")."""
    _quiet_transformers()
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
@click.option("--opset", type=click.IntRange(17), default=18, show_default=True, help="ONNX opset (17 or newer).")
@click.option("--check", is_flag=True, help="Re-validate the export directory PATH instead of exporting.")
@click.option("--ckpt", "ckpt_dir", type=click.Path(file_okay=False), help="With --check: also check against this checkpoint.")
@click.option("--overwrite", is_flag=True, help="Replace an existing export in OUT (atomically; never a directory holding other files).")
def export_cmd(path, out_dir, opset, check, ckpt_dir, overwrite):
    """Export checkpoint PATH to input.onnx, cross.onnx, coupled.onnx + manifest (or --check an export)."""
    _quiet_transformers()
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


@main.command("build-engine")
@click.argument("export_dir", required=False, type=click.Path(file_okay=False))
@click.option("--backend", type=click.Choice(BACKENDS), default="ort", show_default=True, help="Engine backend (aoti: torch.export + AOTInductor, compiled for this machine's CPU or GPU).")
@click.option("--fp16", is_flag=True, help="Float16 graphs (LayerNorm, softmax, mask kept in fp32).")
@click.option("--int8", is_flag=True, help="INT8: dynamic on ORT CPU (no calibration needed), Q/DQ for TensorRT (needs --calib).")
@click.option("--int8-mode", type=click.Choice(["dynamic", "qdq"]), help="INT8 flavour (default: dynamic for ort, qdq for trt).")
@click.option("--calib", type=click.Path(dir_okay=False), help="Real pairs for Q/DQ calibration and for drift (JSONL, TSV or BIG-bench task); without it drift runs on random-token pairs.")
@click.option("--int8-keep-float", type=click.IntRange(0), default=0, show_default=True, help="Dynamic INT8: keep this many of each graph's most error-prone MatMuls (measured on --calib pairs) in float32.")
@click.option("--int8-scheme", type=click.Choice(list(SCHEMES)), help="Dynamic INT8: how weights and activations are quantized [default: the scheme the checkpoint was trained for (distill --qat-epochs), else per-channel-uint8].")
@click.option("--drift-pairs", type=click.IntRange(1), default=500, show_default=True, help="Real pairs on which fp16/int8 drift is measured.")
@click.option("--threads", type=click.IntRange(1), help="ONNX Runtime intra-op threads (default: ORT's choice).")
@click.option("--device", type=click.Choice(DEVICES), default="cpu", show_default=True)
@click.option("--batch", type=click.IntRange(1), default=20, show_default=True, help="TensorRT profile: passages per query.")
@click.option("--seq-q", type=click.IntRange(3), help="Question tokens served (TensorRT profile, CUDA graph captured at load) [default: 32, at most the checkpoint's window].")
@click.option("--seq-p", type=click.IntRange(3), help="Passage tokens served [default: 150, at most the checkpoint's window].")
@click.option("-o", "--out", "out_dir", type=click.Path(file_okay=False), help="Engine directory (default: EXPORT_DIR-BACKEND-PRECISION).")
@click.option("--verbose", "-v", is_flag=True, help="Print fused and quantized op counts per graph.")
def build_engine_cmd(export_dir, backend, fp16, int8, int8_mode, calib, int8_keep_float, int8_scheme, drift_pairs, threads, device, batch, seq_q, seq_p, out_dir, verbose):
    """Build an engine directory (all three graphs, same treatment) from an export.

    EXPORT_DIR defaults to the one export in the working directory (what `dtx export CKPT_DIR` wrote there).
    """
    _quiet_transformers()
    from dtx.artifacts import find_artifact
    from dtx.engines.build import BuildOptions, build_engine
    from dtx.report import emit

    if fp16 and int8:
        raise click.UsageError("--fp16 and --int8 are two precisions: pass one of them (or neither, for fp32)")
    precision = "fp16" if fp16 else "int8" if int8 else "fp32"
    opts = BuildOptions(backend=backend, precision=precision, int8_mode=int8_mode, calib=calib, int8_keep_float=int8_keep_float, int8_scheme=int8_scheme, drift_pairs=drift_pairs, threads=threads, device=device, batch=batch, seq_q=seq_q, seq_p=seq_p)
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


_FT = FinetuneConfig()


@main.command()
@click.argument("model_dir", type=click.Path(file_okay=False))
@click.option("--task", type=click.Choice(TASKS), required=True, help="qa: extractive reader (SQuAD 2.0 style); pair: classifier.")
@click.option("--data", required=True, type=click.Path(dir_okay=False), help="QA: SQuAD JSON, JSONL with answers, BIG-bench Disfl-QA; pair: labelled JSONL/TSV, VitaminC.")
@click.option("--epochs", type=click.IntRange(1), default=_FT.epochs, show_default=True, help="At most this many; early stopping on the held-out passages keeps the best epoch.")
@click.option("--patience", type=click.IntRange(1), default=_FT.patience, show_default=True, help="Stop after this many epochs without a better dev score.")
@click.option("--min-epochs", type=click.IntRange(1), default=_FT.min_epochs, show_default=True)
@click.option("--batch-size", type=click.IntRange(1), default=_FT.batch_size, show_default=True)
@click.option("--lr", type=click.FloatRange(0, min_open=True), default=_FT.lr, show_default=True, help="Peak learning rate (warm-up, then linear decay over --epochs).")
@click.option("--warmup", type=click.FloatRange(0, 1), default=_FT.warmup, show_default=True, help="Share of the steps spent warming up.")
@click.option("--max-len", type=click.IntRange(8), help="Pair tokens (qa: windows, default 256; pair: passage truncated, default 128).")
@click.option("--doc-stride", type=click.IntRange(0), default=_FT.doc_stride, show_default=True, help="QA: tokens shared by consecutive passage windows.")
@click.option("--train-limit", type=click.IntRange(1), help="Train on the first N shuffled training pairs.")
@click.option("--negatives", type=click.FloatRange(0), default=_FT.negatives, show_default=True, help="QA: hard negatives per question (BM25 neighbours among the training paragraphs, labelled no answer).")
@click.option("--dev-limit", type=click.IntRange(1), default=_FT.dev_limit, show_default=True, help="Evaluate on at most N held-out pairs.")
@click.option("--seed", type=int, default=_FT.seed, show_default=True)
@click.option("--bf16/--no-bf16", default=None, help="bf16 autocast (default: on where the device computes bf16 natively: CUDA, AVX512-BF16/AMX CPUs).")
@click.option("--device", type=click.Choice(DEVICES), help="Train on this device (default: CUDA when present, else the CPU).")
@click.option("-o", "--out", "out_dir", required=True, type=click.Path(file_okay=False))
@click.option("--overwrite", is_flag=True, help="Replace OUT (default: refuse; an unfinished run in OUT with the same settings resumes).")
def finetune(model_dir, task, data, epochs, patience, min_epochs, batch_size, lr, warmup, max_len, doc_stride, train_limit, negatives, dev_limit, seed, bf16, device, out_dir, overwrite):
    """Fine-tune a coupled teacher (dev split holds out whole passages / paragraphs); resumes a killed run."""
    _quiet_transformers()
    from dtx.train.finetune import finetune_pair, finetune_qa

    cfg = FinetuneConfig(
        epochs=epochs, patience=patience, min_epochs=min_epochs, batch_size=batch_size, lr=lr, warmup=warmup, max_len=max_len,
        doc_stride=doc_stride, train_limit=train_limit, negatives=negatives, dev_limit=dev_limit, seed=seed, bf16=bf16,
    )  # fmt: skip
    r = (finetune_qa if task == Task.QA else finetune_pair)(model_dir, data, out_dir, cfg, overwrite=overwrite, device=device)
    curve = ", ".join(f"{h['dev']['f1' if task == Task.QA else 'accuracy']:.4g}" for h in r["history"])
    d = r["dev"]
    if task == Task.QA:
        click.echo(
            f"wrote {out_dir}: {r['train_questions']} questions ({r['train_windows']} windows), {r['epochs_run']} epochs in {r['train_seconds']:.0f} s, "
            f"dev F1 per epoch {curve}; kept epoch {r['best_epoch']} ({r['dev_questions']} questions, held-out paragraphs): EM {d['exact']:.2f}, F1 {d['f1']:.2f} "
            f"(HasAns F1 {d['HasAns_f1']:.2f} on {d['HasAns_total']}, NoAns {d['NoAns_f1']:.2f} on {d['NoAns_total']})"
        )
        return
    click.echo(
        f"wrote {out_dir}: {r['train_pairs']} training pairs, {r['epochs_run']} epochs in {r['train_seconds']:.0f} s, dev accuracy per epoch {curve}; "
        f"kept epoch {r['best_epoch']} ({d['pairs']} pairs, held-out passages): accuracy {d['accuracy']:.4f}, macro-F1 {d['macro_f1']:.4f}"
    )


_DC = DistillConfig()


def _distill_options(f):
    """The training options `dtx distill` and `dtx sweep` share; defaults are the recipe in dtx/train/config.py."""
    for option in reversed(
        [
            click.option("--data", required=True, type=click.Path(dir_okay=False), help="QA: questions with answers (SQuAD JSON, JSONL, Disfl-QA); pair: labelled pairs."),
            click.option("--temperature", "-T", type=click.FloatRange(0, min_open=True), default=_DC.temperature, show_default=True),
            click.option("--alpha", "-a", type=click.FloatRange(0, 1), default=_DC.alpha, show_default=True, help="Weight of CE with labels (1 - a on the KL term)."),
            click.option("--epochs", type=click.IntRange(0), default=_DC.epochs, show_default=True, help="Phase-2 (joint) epochs at most; early stopping keeps the best."),
            click.option("--patience", type=click.IntRange(1), default=_DC.patience, show_default=True, help="Stop phase 2 after this many epochs without a better dev score."),
            click.option("--min-epochs", type=click.IntRange(1), default=_DC.min_epochs, show_default=True),
            click.option("--phase1-epochs", type=click.IntRange(0), default=_DC.phase1_epochs, show_default=True, help="Autoencoder epochs with compression (0: phase 2 only)."),
            click.option("--pca-init/--no-pca-init", default=_DC.pca_init, show_default=True, help="Start the compressor from principal components of real layer-N states."),
            click.option("--batch-size", type=click.IntRange(1), default=_DC.batch_size, show_default=True),
            click.option("--lr", type=click.FloatRange(0, min_open=True), default=_DC.lr, show_default=True),
            click.option("--warmup", type=click.FloatRange(0, 1), default=_DC.warmup, show_default=True, help="Share of a phase's steps spent warming up."),
            click.option("--train-limit", type=click.IntRange(1), help="Train on the first N shuffled training examples."),
            click.option("--negatives", type=click.FloatRange(0), default=_DC.negatives, show_default=True, help="QA: hard negatives per question (BM25 neighbours among the training paragraphs), with the teacher's soft targets."),
            click.option("--negative-pool", type=click.IntRange(1), default=_DC.negative_pool, show_default=True, help="QA: negatives are drawn from BM25's top N other paragraphs."),
            click.option("--hidden-weight", type=click.FloatRange(0), default=_DC.hidden_weight, show_default=True, help="Weight of each hidden-state MSE term."),
            click.option("--attention-target", type=click.Choice(["scores", "probs"]), default=_DC.attention_target, show_default=True, help="Attention term on the last layer's unnormalised scores (TinyBERT) or its probabilities."),
            click.option("--attention-weight", type=click.FloatRange(0), default=_DC.attention_weight, show_default=True, help="Weight of the attention MSE term."),
            click.option("--cross-layers/--no-cross-layers", default=_DC.cross_layers, show_default=True, help="Hidden-state MSE at every cross layer, not only the last."),
            click.option("--input-layer/--no-input-layer", default=_DC.input_layer, show_default=True, help="MSE of the state entering the cross layers against the teacher's after N layers."),
            click.option("--qat-epochs", type=click.IntRange(0), default=_DC.qat_epochs, show_default=True, help="Last, quantization-aware epochs: the loss through the INT8 engine's arithmetic (docs/training.md, INT8)."),
            click.option("--qat-lr", type=click.FloatRange(0, min_open=True), default=_DC.qat_lr, show_default=True, help="Peak learning rate of the QAT epochs."),
            click.option("--qat-scheme", type=click.Choice(list(SCHEMES)), default=_DC.qat_scheme, show_default=True, help="The INT8 scheme QAT trains for (and build-engine --int8 then builds)."),
            click.option("--dev-limit", type=click.IntRange(1), default=_DC.dev_limit, show_default=True),
            click.option("--seed", type=int, default=_DC.seed, show_default=True),
            click.option("--bf16/--no-bf16", default=None, help="bf16 autocast (default: where the device computes bf16 natively)."),
            click.option("--device", type=click.Choice(DEVICES), help="Train on this device (default: CUDA when present, else the CPU)."),
        ]
    ):
        f = option(f)
    return f


def _distill_config(labels_only: bool = False, device: str | None = None, **options) -> DistillConfig:
    """The config from the shared options (`device` is where to run, not a setting of the recipe)."""
    return DistillConfig(labels_only=labels_only, **options)


@main.command()
@click.argument("ckpt_dir", type=click.Path(file_okay=False))
@_distill_options
@click.option("--labels-only", is_flag=True, help="Ablation: plain fine-tuning of the decoupled model, no teacher.")
@click.option("-o", "--out", "out_dir", type=click.Path(file_okay=False), help="Where to write the student (default: CKPT_DIR, replaced atomically).")
def distill(ckpt_dir, data, labels_only, out_dir, **options):
    """Distil the decoupled student from its coupled teacher; resumes a killed run from its last epoch."""
    _quiet_transformers()
    from dtx.atomic import check_output
    from dtx.train.distill import distill as run
    from dtx.model.checkpoint import CHECKPOINT, read_meta
    from dtx.train.sweep import headline

    cfg = _distill_config(labels_only, **options)
    cfg.check()
    check_output(out_dir or ckpt_dir, CHECKPOINT, overwrite=True)  # replaced every epoch: dtx's own checkpoint only, writable
    r = run(ckpt_dir, data, cfg, out_dir, device=options["device"])
    f = r["final"]
    metric = headline(read_meta(out_dir or ckpt_dir).decoupling.task)
    click.echo(
        f"wrote {out_dir or ckpt_dir}: dev ({r['dev_pairs']} held-out examples) student {metric} {f['student'][metric]:.4f}, "
        f"teacher {f['teacher'][metric]:.4f}, agreement {f['agreement']:.4f}"
    )
    if "qat" in r:
        q = r["qat"]
        click.echo(f"as the INT8 engine computes it ({q['scheme']['name']}): student {metric} {q['before']['student'][metric]:.4f} before QAT, {q['after']['student'][metric]:.4f} after")


@main.command()
@click.argument("teacher_dir", type=click.Path(file_okay=False))
@_distill_options
@click.option("--splits", required=True, callback=_int_list, help="Comma list of splits N, e.g. 1,2,3,4,5.")
@click.option("--compress", "-k", default="4", show_default=True, callback=_int_list, help="Comma list of compression ratios (1 = none).")
@click.option("--variants", default="distill", show_default=True, help="Comma list of distill, labels-only (no teacher), phase2-only (no autoencoder phase), no-pca (random compressor start).")
@click.option("-o", "--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Sweep directory (one student per cell; re-run resumes).")
@click.option("--json", "json_path", type=OUTPUT_FILE, help="Also write the table as JSON (it is always in OUT/sweep.json).")
@click.option("--plot", "plot_path", type=OUTPUT_FILE, help="Write a PNG of accuracy kept and FLOP speed-up against the split.")
@click.option("--grid", "grid", multiple=True, metavar="SETTING=V1,V2", help="Also sweep a distillation setting, e.g. --grid lr=5e-5,1e-4,2e-4 --grid alpha=0.2,0.5 (any option above; each value checked as that option is).")
@click.option("--jobs", "-j", type=click.IntRange(1), default=1, show_default=True, help="Cells trained at once, each in its own process: on one GPU a small student leaves it mostly idle (8 fill an H200 with MiniLM); on a CPU the cores are divided between them.")
def sweep(teacher_dir, data, splits, compress, variants, out_dir, json_path, plot_path, grid, jobs, **options):
    """Distil and score a student per (split, compression): accuracy kept and cost, as the paper tabulates."""
    _quiet_transformers()
    from dataclasses import replace

    from dtx.atomic import check_writable
    from dtx.report import emit, save_json
    from dtx.train.sweep import SweepConfig, grid_settings, plot_sweep, run_sweep

    check_writable(out_dir)
    cfg = SweepConfig(splits=splits, compress=compress, distill=_distill_config(**options), variants=[v.strip() for v in variants.split(",") if v.strip()], grid=_grid(click.get_current_context(), grid))
    for settings in grid_settings(cfg.grid):
        replace(cfg.distill, **dict(settings)).check()  # every cell's schedule, before the first trains
    report = run_sweep(teacher_dir, data, out_dir, cfg, device=options["device"], jobs=jobs)
    rows = [[r["layers"], f"{r['compress']}x", r["variant"] + "".join(f" {k}={v}" for k, v in r["settings"].items()), round(r["teacher"], 4), round(r["student"], 4), f"{r['kept_percent']:.1f}%", f"{r['flop_speedup']:.2f}x", r["cache_bytes_per_passage"]] for r in report["rows"]]
    metric = report["rows"][0]["metric"] if report["rows"] else "metric"
    emit(f"sweep of {teacher_dir} on {data} (dev {metric})", ["split", "compress", "variant", "teacher", "student", "kept", "FLOP speed-up", "cache B/passage"], rows)
    save_json(json_path, report)
    if plot_path:
        plot_sweep(report, plot_path)
        click.echo(f"wrote {plot_path}")


def _grid(ctx: click.Context, specs: tuple[str, ...]) -> dict[str, list]:
    """`--grid lr=1e-4,2e-4` -> {"lr": [0.0001, 0.0002]}, each value converted and range-checked by the option it names."""
    options = {p.name: p for p in ctx.command.params if isinstance(p, click.Option) and p.name in DistillConfig.__dataclass_fields__}
    grid: dict[str, list] = {}
    for spec in specs:
        name, _, values = spec.partition("=")
        name = name.strip().lstrip("-").replace("-", "_")
        if name not in options or not values:
            raise click.BadParameter(f"{spec!r}: write SETTING=V1,V2 with SETTING one of {', '.join(sorted(options))}", param_hint="--grid")
        if name in grid:
            raise click.BadParameter(f"{name} is given twice; list all its values in one --grid {name}=...", param_hint="--grid")
        param = options[name]
        grid[name] = [param.type.convert(v.strip(), param, ctx) for v in values.split(",") if v.strip()]
    return grid


def _human_bytes(n: float) -> str:
    return f"{n:.3e} B ({n / 1e12:.3g} TB, {n / 2**40:.3g} TiB)"


@main.command()
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
        try:
            report = json.loads(Path(bench_json).read_text(encoding="utf-8-sig"))
            index_rate = report["passages_per_s"] if "passages_per_s" in report else 1e3 / report["rows"][0]["index_ms_per_passage"]
        except (ValueError, KeyError, IndexError, TypeError, UnicodeDecodeError):
            raise ConfigError(f"--bench-json {bench_json} is not a `dtx index --json` or `dtx bench --json` report; pass one of those, or --index-rate") from None
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


@main.command()
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
    from dataclasses import asdict

    from dtx.report import emit, save_json
    from dtx.store.indexer import index_corpus

    _quiet_transformers()
    _check_store_writable(store, "-o")
    r = index_corpus(corpus, engine_dir, store, dtype, batch, chunk, limit, threads, None if ray_address == "local" else ray_address, ray_address is not None, split=split)
    rows = [[k, v] for k, v in asdict(r).items()] + [["passages/s", round(r.passages_per_s, 2)]]
    emit(f"indexed into {store}", ["field", "value"], rows)
    save_json(json_path, {**asdict(r), "passages_per_s": r.passages_per_s, "store": store})


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


@main.command()
@_query_options
def answer(store, query, engine_dir, k, ids, top, threads, json_path):
    """QA over a store: BM25 candidates, cached representations, answer spans with scores."""
    from dtx.query import QueryPipeline

    _quiet_transformers()
    with QueryPipeline.open(store, engine_dir, threads) as pipe:
        _print_result(pipe.answer(query, k, ids), json_path, top, qa=True)


@main.command()
@_query_options
@click.option("--label", help="Pair models: the class whose log-probability ranks (default: a positive-sounding one, else the last).")
def rerank(store, query, engine_dir, k, ids, top, threads, json_path, label):
    """Candidates (BM25's or --ids) ordered by the cross-encoder score."""
    from dtx.query import QueryPipeline

    _quiet_transformers()
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


@main.command("check-store")
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

    _quiet_transformers()
    report = PassageStore.open(store).verify()
    emit(f"store {store}: integrity ok", ["field", "value"], list(report.items()))
    if queries:
        from dtx.query.agreement import store_agreement

        agree = store_agreement(store, queries, limit, k, engine_dir)
        emit("store vs on-the-fly representations", ["measure", "value"], list(agree.items()))
        report["agreement"] = agree
    save_json(json_path, report)


@main.command()
@click.argument("target", required=False, type=click.Path(file_okay=False))
@click.option("--arch", help="Random-weight preset to build when no TARGET is given (bert-base, bert-large, electra-base, electra-small, minilm-l6).")
@click.option("--split", "-n", "splits", callback=_int_list, help="Split N, or a comma list for a sweep (e.g. 1,3,5,7,9,11).")
@click.option("--compress", "-k", type=click.IntRange(1), default=1, show_default=True, help="Compression ratio of models decoupled for the bench.")
@click.option("--candidates", "-K", callback=_int_list, default="20", show_default=True, help="Passages per query, or a comma list for a sweep.")
@click.option("--seq-q", type=click.IntRange(3), default=32, show_default=True, help="Question tokens (specials included).")
@click.option("--seq-p", type=click.IntRange(3), default=150, show_default=True, help="Passage tokens (specials included).")
@click.option("--backend", type=click.Choice(BACKENDS), default="ort", show_default=True)
@click.option("--precision", type=click.Choice(PRECISIONS), default="fp32", show_default=True)
@click.option("--calib", type=click.Path(dir_okay=False), help="Real pairs for INT8 calibration (required with --precision int8).")
@click.option("--runs", "-r", type=click.IntRange(1), default=20, show_default=True, help="Timed queries per configuration.")
@click.option("--warmup", type=click.IntRange(0), default=2, show_default=True)
@click.option("--threads", type=click.IntRange(1), help="ONNX Runtime intra-op threads (default: one per core).")
@click.option("--device", type=click.Choice(DEVICES), default="cpu", show_default=True)
@click.option("--cuda-graphs/--no-cuda-graphs", default=True, show_default=True, help="Torch backend on CUDA: replay captured CUDA graphs.")
@click.option("--fp32-baseline/--no-fp32-baseline", default=True, show_default=True, help="With --precision fp16/int8: also time the coupled model in fp32 (builds a second engine).")
@click.option("--json", "json_path", type=OUTPUT_FILE, help="Write the full report (every timing) as JSON.")
@click.option("--plot", "plot_path", type=OUTPUT_FILE, help="Write a PNG of latency and speed-up vs split (or K).")
def bench(target, arch, splits, compress, candidates, seq_q, seq_p, backend, precision, calib, runs, warmup, threads, device, cuda_graphs, fp32_baseline, json_path, plot_path):
    """Per-query latency, decoupled vs coupled, on an engine, export, checkpoint or --arch preset.

    With neither TARGET nor --arch: the one engine in the working directory (what `dtx build-engine` wrote there).
    """
    _quiet_transformers()
    from dtx.artifacts import find_artifact
    from dtx.bench.run import BenchConfig, plot, run_bench, summary_rows
    from dtx.report import emit, save_json

    if target is not None and arch is not None:
        raise click.UsageError("pass TARGET (engine, export or checkpoint directory) or --arch PRESET, not both")
    if target is None and arch is None:
        target = str(find_artifact("engine"))
        click.echo(f"engine: {target} (the one in this directory)")
    cfg = BenchConfig(
        target=target, arch=arch, splits=splits or [5], compress=compress, candidates=candidates, seq_q=seq_q, seq_p=seq_p, backend=backend, precision=precision,
        calib=calib, runs=runs, warmup=warmup, threads=threads, device=device, cuda_graphs=cuda_graphs, fp32_baseline=fp32_baseline,
    )  # fmt: skip
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



@main.command("eval")
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

    _quiet_transformers()
    r = evaluate_model(model, data, split, limit, batch_size, threads)
    emit(f"{r['kind']} {model} on {r['examples']} {split} examples of {data}", ["metric", "teacher", "student", "student / teacher"], eval_rows(r))
    click.echo(f"student and teacher predict the same {'answer' if r['task'] == Task.QA else 'label'} on {100 * r['agreement']:.1f}% of examples")
    save_json(json_path, r)


def eval_rows(r: dict) -> list[list]:
    """Metric rows (teacher, student, ratio) of an eval report."""
    keys = ["exact", "f1", "HasAns_exact", "HasAns_f1", "NoAns_exact", "NoAns_f1"] if r["task"] == Task.QA else ["accuracy", "macro_f1", "mrr@10"]
    rows = []
    for k in keys:
        if k in r["teacher"]:
            t, s = r["teacher"][k], r["student"][k]
            rows.append([k, round(t, 4), round(s, 4), f"{100 * s / t:.1f}%" if t else "-"])
    return rows

@main.command("eval-store")
@click.argument("store")
@click.option("--data", required=True, type=click.Path(dir_okay=False), help="QA data whose held-out questions are asked (SQuAD JSON / JSONL / Disfl-QA).")
@click.option("-k", "--candidates", "k", type=click.IntRange(1), default=20, show_default=True, help="BM25 candidates read per question.")
@click.option("--limit", type=click.IntRange(1), help="Ask only the first N held-out questions.")
@click.option("--engine", "engine_dir", type=click.Path(file_okay=False), help="Engine to read with (default: the one that built the store).")
@click.option("--threads", type=click.IntRange(1), help="ONNX Runtime intra-op threads.")
@click.option("--json", "json_path", type=OUTPUT_FILE, help="Also write the report as JSON.")
def eval_store(store, data, k, limit, engine_dir, threads, json_path):
    """End to end: BM25 top-k from STORE read by the student from cached passages, and by the coupled teacher on the same candidates."""
    from dtx.query.open_domain import open_domain_eval
    from dtx.report import emit, save_json

    _quiet_transformers()
    r = open_domain_eval(store, data, k, limit, engine_dir, threads)
    emit(
        f"{r['questions']} held-out questions of {data}, top {k} BM25 candidates from {store} (gold paragraph retrieved for {100 * r['gold_passage_retrieved']:.1f}%)",
        ["reader", "EM", "F1", "HasAns F1", "NoAns", "p50 ms/query", "p90 ms/query"],
        [[name, f"{m['exact']:.2f}", f"{m['f1']:.2f}", f"{m.get('HasAns_f1', float('nan')):.2f}", f"{m.get('NoAns_f1', float('nan')):.2f}", f"{m['p50_ms']:.1f}", f"{m['p90_ms']:.1f}"]
         for name, m in (("student, cached passages", r["student"]), ("coupled teacher, same candidates", r["teacher"]))],
    )  # fmt: skip
    click.echo(f"same answer on {100 * r['agreement']:.1f}% of questions")
    save_json(json_path, r)


@main.command()
@click.argument("store", required=False)
@click.option("--engine", "engine_dir", type=click.Path(file_okay=False), help="Engine that reads the store (default: the one that built it); required without STORE.")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True)
@click.option("--max-batch-pairs", type=click.IntRange(1), help="A micro-batch closes once it holds this many (question, passage) pairs [default: 1 on a CPU engine, where merging was measured slower; 128 on CUDA].")
@click.option("--max-wait-ms", type=click.FloatRange(0), help="How long a request waits for others to share its cross-component call [default: 0 on CPU, 5 on CUDA].")
@click.option("--threads", type=click.IntRange(1), help="ONNX Runtime intra-op threads (per replica with --ray).")
@click.option("--ray", "ray_address", is_flag=False, flag_value="local", default=None, help="Serve on Ray Serve: `--ray` starts a local instance, `--ray ADDRESS` joins a cluster (STORE and --engine must be reachable from its nodes).")
@click.option("--replicas", type=click.IntRange(1), default=1, show_default=True, help="Ray Serve replicas, each with its own engine and store reader (with --ray).")
def serve(store, engine_dir, host, port, max_batch_pairs, max_wait_ms, threads, ray_address, replicas):
    """Serve /v1/rerank, /v1/answer and /rerank over HTTP (OpenAPI at /docs, a search page at /); STORE's passages by id or BM25, or documents sent inline.

    Without STORE, only documents sent with the request are scored (--engine required). The store and
    engine are opened and checked before the server listens; SIGTERM finishes the requests in flight.
    """
    _quiet_transformers()
    if store is None and engine_dir is None:
        raise click.UsageError("pass STORE, or --engine ENGINE_DIR to serve documents sent inline")
    if replicas > 1 and ray_address is None:
        raise click.UsageError("--replicas needs --ray (one process serves one replica)")
    try:
        from dtx.serve.app import check_port, create_app, micro_batching, run_server
        from dtx.serve.batcher import default_batching
    except ImportError as e:
        raise DtxError(f"dtx serve needs FastAPI and uvicorn ({e.name} is missing): pip install -e '.[serve]'") from None
    from dtx.query import QueryPipeline

    check_port(host, port)
    pipe = QueryPipeline.open(store, engine_dir, threads=threads)
    if pipe.store is not None:
        pipe.store.probe()  # a missing data file or index: one line now, not a failure on every request
    pairs, wait = default_batching(pipe.engine.device)
    max_batch_pairs, max_wait_ms = max_batch_pairs or pairs, wait if max_wait_ms is None else max_wait_ms
    where = f"Ray Serve ({replicas} replica{'s' * (replicas > 1)})" if ray_address else "uvicorn"
    click.echo(f"serving {store or 'inline documents'} ({pipe.task}) on http://{host}:{port} with {where}, cross calls of up to {max_batch_pairs} pairs waiting up to {max_wait_ms:g} ms (OpenAPI: /docs)")
    if ray_address is None:
        run_server(create_app(pipe, micro_batching(max_batch_pairs, max_wait_ms)), host, port)
        return
    pipe.close()  # checked; each replica opens its own
    try:
        from dtx.serve.ray_app import run_on_ray
    except ImportError as e:
        raise DtxError(f"dtx serve --ray needs Ray Serve ({e.name} is missing): pip install -e '.[serve,ray]'") from None
    local = lambda p: p if p is None or "://" in p else str(Path(p).resolve())  # noqa: E731 - replicas run in other directories
    run_on_ray(local(store), local(engine_dir), None if ray_address == "local" else ray_address, host, port, replicas, threads, max_batch_pairs, max_wait_ms)


@main.command("bench-serve")
@click.argument("url")
@click.option("--queries", required=True, type=click.Path(dir_okay=False), help="Questions: any pairs file dtx reads (each distinct question once).")
@click.option("--split", type=click.Choice(SPLITS), default="dev", show_default=True, help="Whose questions: the held-out passages' (what a dev store holds) or the rest.")
@click.option("--store", help="The store the server reads: also answer the questions in-process with it, one at a time, for the HTTP overhead and batching gain.")
@click.option("-n", "--requests", type=click.IntRange(1), default=96, show_default=True, help="Requests per concurrency level.")
@click.option("-c", "--concurrency", default="1,4,16,64", show_default=True, help="Comma-separated client counts.")
@click.option("-K", "--top-k", type=click.IntRange(1), default=20, show_default=True, help="BM25 candidates per request.")
@click.option("--threads", type=click.IntRange(1), help="ORT threads of the in-process run (give it what the server has).")
@click.option("--json", "json_path", type=OUTPUT_FILE, help="Also write the report as JSON.")
@click.option("--plot", "plot_path", type=OUTPUT_FILE, help="Throughput and latency bars per concurrency (PNG).")
def bench_serve(url, queries, split, store, requests, concurrency, top_k, threads, json_path, plot_path):
    """Load a running `dtx serve` at URL: throughput, p50/p99 and errors per number of concurrent clients."""
    from dtx.bench.serve_load import ServeLoadConfig, plot_serve_load, run_serve_load
    from dtx.data.pairs import read_pairs
    from dtx.data.splits import split_by_passage
    from dtx.report import emit, save_json

    _quiet_transformers()
    try:
        levels = tuple(int(c) for c in concurrency.split(","))
    except ValueError:
        raise click.BadParameter(f"{concurrency!r} is not a comma-separated list of client counts, e.g. 1,4,16", param_hint="--concurrency") from None
    if not levels or min(levels) < 1:
        raise click.BadParameter("client counts must be >= 1", param_hint="--concurrency")
    pairs = read_pairs(queries)
    if split != "all":
        pairs = dict(zip(("train", "dev"), split_by_passage(pairs)))[split]
    questions = tuple(q for q in dict.fromkeys(p.question for p in pairs) if q.strip())[:requests]
    if not questions:
        raise DtxError(f"{queries} holds no {split} questions; pick another --split")
    r = run_serve_load(ServeLoadConfig(url=url, store=store, questions=questions, concurrency=levels, top_k=top_k, threads=threads))
    rows = [[lv["concurrency"], lv["requests"], lv["errors"], lv["throughput_qps"], lv["p50_ms"], lv["p99_ms"]] for lv in r["levels"]]
    if "in_process" in r:
        d = r["in_process"]
        rows.append(["in-process, sequential", d["requests"], 0, d["throughput_qps"], d["p50_ms"], d["p99_ms"]])
    emit(f"POST /v1/rerank on {url}, top_k {top_k}", ["clients", "requests", "errors", "queries/s", "p50 ms", "p99 ms"], rows)
    if "http_over_in_process_p50" in r:
        click.echo(f"HTTP p50 at 1 client / in-process p50: {r['http_over_in_process_p50']:.3f}")
    if "throughput_16_over_sequential" in r:
        click.echo(f"throughput at 16 clients / in-process sequential: {r['throughput_16_over_sequential']:.3f}")
    save_json(json_path, r)
    if plot_path:
        plot_serve_load(r, plot_path)
        click.echo(f"wrote {plot_path}")


@main.command("bench-store")
@click.argument("target", required=False)
@click.option("--arch", help="Random-weight preset to build when no engine is given (e.g. bert-base).")
@click.option("-n", "--split", type=click.IntRange(0), help="Split of the model decoupled for the bench.")
@click.option("-k", "--compress", type=click.IntRange(1), default=4, show_default=True, help="Compression of the model decoupled for the bench.")
@click.option("--store", required=True, help="Timing store to build (resumably) and read: random representations.")
@click.option("--passages", type=click.IntRange(1), default=1_000_000, show_default=True, help="Passages in the timing store.")
@click.option("--seq-p", type=click.IntRange(3), default=150, show_default=True, help="Tokens per stored passage.")
@click.option("-K", "--candidates", type=click.IntRange(1), default=20, show_default=True, help="Passages fetched per query.")
@click.option("--dtype", type=click.Choice(DTYPES), default="int8", show_default=True)
@click.option("-r", "--runs", type=click.IntRange(1), default=200, show_default=True, help="Timed queries.")
@click.option("--threads", type=click.IntRange(1), help="ONNX Runtime intra-op threads.")
@click.option("--json", "json_path", type=OUTPUT_FILE, help="Also write the report as JSON.")
def bench_store(target, arch, split, compress, store, passages, seq_p, candidates, dtype, runs, threads, json_path):
    """Gather latency of K cached passages from a large store, against the decoupled query it feeds."""
    import tempfile

    from dtx.bench.gather import GatherConfig, time_gather
    from dtx.bench.prepare import prepare
    from dtx.engines.build import SERVE_SEQ_Q, BuildOptions
    from dtx.report import emit, save_json

    _quiet_transformers()
    if (target is None) == (arch is None):
        raise click.UsageError("pass TARGET (an engine) or --arch PRESET, one of them")
    cfg = GatherConfig(store=store, passages=passages, seq_p=seq_p, candidates=candidates, dtype=dtype, runs=runs, seq_q=SERVE_SEQ_Q)
    cfg.check()
    _check_store_writable(store, "--store")
    with tempfile.TemporaryDirectory(prefix="dtx-bench-store-") as work:
        engine_dir = prepare(target, arch, split, compress, BuildOptions(threads=threads), SERVE_SEQ_Q, Path(work), True).engine_dir
        r = time_gather(cfg, engine_dir, threads)
    f, q = r["fetch"], r["decoupled_query"]
    emit(
        f"{r['passages_in_store']:,} passages ({r['dtype']}, {r['seq_p']} x {r['rep_dim']}), K={candidates}, {runs} queries",
        ["path", "p50 ms", "p99 ms"],
        [["fetch K cached passages", f["p50_ms"], f["p99_ms"]], ["decoupled query (input + cross)", q["p50_ms"], q["p99_ms"]]],
    )
    click.echo(f"fetch adds {100 * r['fetch_over_query_p50']:.1f}% to the decoupled query (p50 / p50, same run)")
    save_json(json_path, r)

if __name__ == "__main__":
    sys.exit(main())
