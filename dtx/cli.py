"""The `dtx` command. Thin: each command parses options, calls one library function, prints.

A `DtxError` (bad input, missing or mismatched files) becomes one line on stderr and exit
status 1; heavy libraries are imported inside the commands so `dtx --help` is instant.
"""

from __future__ import annotations

import os
import sys
from dataclasses import asdict
from pathlib import Path

INTERRUPTED = "interrupted (Ctrl-C); nothing unfinished was published, and the same command starts it again (a training run or an index resumes)"

try:  # a Ctrl-C while the imports load (seconds: torch) is one line and status 130, as it is later
    import click

    from dtx.commands.common import OUTPUT_FILE, int_list, quiet_transformers
    from dtx.engines.manifest import DEVICES
    from dtx.model.int8 import SCHEMES
    from dtx.errors import DtxError
    from dtx.model.no_answer import CONDITIONS, READERS, RETRIEVED_K, NoAnswer
    from dtx.task import TASKS, Task
    from dtx.train.config import AUGMENT_SIDES, DistillConfig, FinetuneConfig
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


@click.group(cls=DtxGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="dtx")
def main() -> None:
    """dtx: decouple a cross-encoder, export it, build engines, cache passages, benchmark."""


_FT = FinetuneConfig()
SELECT_HELP = "Percent of passages also held out to choose the epoch kept (0: choose it on the dev passages that are reported)."


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
@click.option("--dev-limit", type=click.IntRange(1), default=_FT.dev_limit, show_default=True, help="Evaluate on at most N held-out pairs (each held-out split).")
@click.option("--select-percent", type=click.IntRange(0, 89), default=_FT.select_percent, show_default=True, help=SELECT_HELP)
@click.option("--seed", type=int, default=_FT.seed, show_default=True)
@click.option("--bf16/--no-bf16", default=None, help="bf16 autocast (default: on where the device computes bf16 natively: CUDA, AVX512-BF16/AMX CPUs).")
@click.option("--device", type=click.Choice(DEVICES), help="Train on this device (default: CUDA when present, else the CPU).")
@click.option("-o", "--out", "out_dir", required=True, type=click.Path(file_okay=False))
@click.option("--overwrite", is_flag=True, help="Replace OUT (default: refuse; an unfinished run in OUT with the same settings resumes).")
def finetune(model_dir, task, data, epochs, patience, min_epochs, batch_size, lr, warmup, max_len, doc_stride, train_limit, negatives, dev_limit, select_percent, seed, bf16, device, out_dir, overwrite):
    """Fine-tune a coupled teacher (dev split holds out whole passages / paragraphs); resumes a killed run."""
    quiet_transformers()
    from dtx.train.finetune import finetune_pair, finetune_qa, prior_warning

    cfg = FinetuneConfig(
        epochs=epochs, patience=patience, min_epochs=min_epochs, batch_size=batch_size, lr=lr, warmup=warmup, max_len=max_len,
        doc_stride=doc_stride, train_limit=train_limit, negatives=negatives, dev_limit=dev_limit, select_percent=select_percent, seed=seed, bf16=bf16,
    )  # fmt: skip
    r = (finetune_qa if task == Task.QA else finetune_pair)(model_dir, data, out_dir, cfg, overwrite=overwrite, device=device)
    d = r["dev"]
    if task == Task.QA:
        click.echo(
            f"wrote {out_dir}: {r['train_questions']} questions ({r['train_windows']} windows), {r['epochs_run']} epochs in {r['train_seconds']:.0f} s, "
            f"{_kept_epoch(r, 'f1', 'questions')}; dev ({r['dev_questions']} questions, held-out paragraphs): EM {d['exact']:.2f}, F1 {d['f1']:.2f} "
            f"(HasAns F1 {d['HasAns_f1']:.2f} on {d['HasAns_total']}, NoAns {d['NoAns_f1']:.2f} on {d['NoAns_total']})"
        )
        return
    click.echo(
        f"wrote {out_dir}: {r['train_pairs']} training pairs, {r['epochs_run']} epochs in {r['train_seconds']:.0f} s, {_kept_epoch(r, 'accuracy', 'pairs')}; "
        f"dev ({d['pairs']} pairs, held-out passages): accuracy {d['accuracy']:.4f}, macro-F1 {d['macro_f1']:.4f}"
    )
    if warning := prior_warning(r):
        click.echo(warning, err=True)


def _kept_epoch(report: dict, metric: str, unit: str) -> str:
    """Which split chose the epoch, its per-epoch curve and the epoch kept, as `dtx finetune` prints them."""
    side = "select" if "select" in report else "dev"
    curve = ", ".join(f"{h[side][metric]:.4g}" for h in report["history"])
    where = f"selection split ({report[f'select_{unit}']} {unit})" if side == "select" else "dev split itself"
    return f"{metric} per epoch on the {where} {curve}: kept epoch {report['best_epoch']}"


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
            click.option("--augment", type=click.FloatRange(0), default=_DC.augment, show_default=True, help="Copies per training example with words swapped for near synonyms, trained on the teacher's targets only."),
            click.option("--augment-side", type=click.Choice(list(AUGMENT_SIDES)), default=_DC.augment_side, show_default=True, help="Which text an --augment copy varies: the question, the passage, or both."),
            click.option("--hidden-weight", type=click.FloatRange(0), default=_DC.hidden_weight, show_default=True, help="Weight of each hidden-state MSE term."),
            click.option("--attention-target", type=click.Choice(["scores", "probs"]), default=_DC.attention_target, show_default=True, help="Attention term on the last layer's unnormalised scores (TinyBERT) or its probabilities."),
            click.option("--attention-weight", type=click.FloatRange(0), default=_DC.attention_weight, show_default=True, help="Weight of the attention MSE term."),
            click.option("--cross-layers/--no-cross-layers", default=_DC.cross_layers, show_default=True, help="Hidden-state MSE at every cross layer, not only the last."),
            click.option("--input-layer/--no-input-layer", default=_DC.input_layer, show_default=True, help="MSE of the state entering the cross layers against the teacher's after N layers."),
            click.option("--qat-epochs", type=click.IntRange(0), default=_DC.qat_epochs, show_default=True, help="Last, quantization-aware epochs: the loss through the INT8 engine's arithmetic (docs/training.md, INT8)."),
            click.option("--qat-lr", type=click.FloatRange(0, min_open=True), default=_DC.qat_lr, show_default=True, help="Peak learning rate of the QAT epochs."),
            click.option("--qat-scheme", type=click.Choice(list(SCHEMES)), default=_DC.qat_scheme, show_default=True, help="The INT8 scheme QAT trains for (and build-engine --int8 then builds); for an AVX2-only CPU (no VNNI) take a -reduce-range scheme: 8-bit weights saturate its integer kernel."),
            click.option("--dev-limit", type=click.IntRange(1), default=_DC.dev_limit, show_default=True, help="Evaluate on at most N held-out examples (each held-out split)."),
            click.option("--select-percent", type=click.IntRange(0, 89), default=_DC.select_percent, show_default=True, help=SELECT_HELP),
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
@click.option("--calibrate/--no-calibrate", default=True, show_default=True, help="QA: then choose the no-answer thresholds on the selection split (as `dtx calibrate` does).")
def distill(ckpt_dir, data, labels_only, out_dir, calibrate, **options):
    """Distil the decoupled student from its coupled teacher; resumes a killed run from its last epoch."""
    quiet_transformers()
    from dtx.atomic import check_output
    from dtx.train.distill import distill as run
    from dtx.model.checkpoint import CHECKPOINT, read_meta
    from dtx.train.sweep import headline

    cfg = _distill_config(labels_only, **options)
    cfg.check()
    check_output(out_dir or ckpt_dir, CHECKPOINT, overwrite=True)  # replaced every epoch: dtx's own checkpoint only, writable
    r = run(ckpt_dir, data, cfg, out_dir, device=options["device"], calibrate=calibrate)
    f = r["final"]
    metric = headline(read_meta(out_dir or ckpt_dir).decoupling.task)
    click.echo(
        f"wrote {out_dir or ckpt_dir}: dev ({r['dev_pairs']} held-out examples) student {metric} {f['student'][metric]:.4f}, "
        f"teacher {f['teacher'][metric]:.4f}, agreement {f['agreement']:.4f}"
        + (f"; epoch {r['best_epoch']} kept on {r['select_pairs']} other held-out examples" if "select" in r else "")
    )
    if "qat" in r:
        q = r["qat"]
        click.echo(f"as the INT8 engine computes it ({q['scheme']['name']}): student {metric} {q['before']['student'][metric]:.4f} before QAT, {q['after']['student'][metric]:.4f} after")
    if "no_answer" in r:
        _echo_no_answer(NoAnswer.from_dict(r["no_answer"]))


def _echo_no_answer(no_answer: NoAnswer) -> None:
    """The thresholds chosen and what they did on the selection split, one line per condition."""
    for condition in CONDITIONS:
        f1 = no_answer.selection_f1.get(condition, {})
        where = "given its paragraph" if condition == "paragraph" else f"behind BM25 top-{no_answer.k} of {no_answer.paragraphs} paragraphs"
        click.echo(
            f"no-answer threshold, {where} ({no_answer.questions} selection questions): "
            + ", ".join(f"{who} {no_answer.threshold(condition, path):+.2f} (F1 {f1[path]['at_0']:.2f} at 0 -> {f1[path]['calibrated']:.2f})"
                        for who, path in READERS.items() if path in f1)
        )  # fmt: skip


@main.command()
@click.argument("ckpt_dir", type=click.Path(file_okay=False))
@click.option("--data", required=True, type=click.Path(dir_okay=False), help="The QA data the student was trained on (its selection split is read).")
@click.option("-k", "--candidates", "k", type=click.IntRange(1), default=RETRIEVED_K, show_default=True, help="BM25 candidates per question in the retrieve-then-read condition.")
@click.option("--select-percent", type=click.IntRange(1, 89), help="The run's --select-percent (default: the one its distill report records).")
@click.option("--dev-limit", type=click.IntRange(1), help="Selection questions read (default: the run's --dev-limit).")
def calibrate(ckpt_dir, data, k, select_percent, dev_limit):
    """Choose a QA checkpoint's no-answer thresholds (student and teacher, given a paragraph and behind BM25) on
    its selection split and record them in it; export and build engines after, for them to carry the thresholds."""
    quiet_transformers()
    from dtx.model.checkpoint import load_checkpoint
    from dtx.train.calibrate import calibrate_checkpoint

    ckpt = load_checkpoint(ckpt_dir)
    run = {**asdict(DistillConfig()), **ckpt.meta.reports.get("distill", {}).get("config", {})}  # the run's split, else the defaults
    no_answer = calibrate_checkpoint(ckpt, data, run["dev_percent"], select_percent or run["select_percent"], dev_limit or run["dev_limit"], run["seed"], k)
    click.echo(f"wrote the no-answer thresholds into {ckpt_dir}/decoupled.json")
    _echo_no_answer(no_answer)


@main.command()
@click.argument("teacher_dir", type=click.Path(file_okay=False))
@_distill_options
@click.option("--splits", required=True, callback=int_list, help="Comma list of splits N, e.g. 1,2,3,4,5.")
@click.option("--compress", "-k", default="4", show_default=True, callback=int_list, help="Comma list of compression ratios (1 = none).")
@click.option("--variants", default="distill", show_default=True, help="Comma list of distill, labels-only (no teacher), phase2-only (no autoencoder phase), no-pca (random compressor start).")
@click.option("-o", "--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Sweep directory (one student per cell; re-run resumes).")
@click.option("--json", "json_path", type=OUTPUT_FILE, help="Also write the table as JSON (it is always in OUT/sweep.json).")
@click.option("--plot", "plot_path", type=OUTPUT_FILE, help="Write a PNG of accuracy kept and FLOP speed-up against the split.")
@click.option("--grid", "grid", multiple=True, metavar="SETTING=V1,V2", help="Also sweep a distillation setting, e.g. --grid lr=5e-5,1e-4,2e-4 --grid alpha=0.2,0.5 (any option above; each value checked as that option is).")
@click.option("--jobs", "-j", type=click.IntRange(1), default=1, show_default=True, help="Cells trained at once, each in its own process: on one GPU a small student leaves it mostly idle (8 fill an H200 with MiniLM); on a CPU the cores are divided between them.")
def sweep(teacher_dir, data, splits, compress, variants, out_dir, json_path, plot_path, grid, jobs, **options):
    """Distil and score a student per (split, compression): accuracy kept and cost, as the paper tabulates."""
    quiet_transformers()
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


def _register() -> None:
    """The command groups, a module each (dtx/commands/): model, store, bench, serve, evaluate (training's are above)."""
    from dtx.commands import bench, evaluate, model, serve, store

    for module, names in ((model, ("decouple", "info", "export_cmd", "build_engine_cmd", "plan")), (store, ("index", "answer", "rerank", "check_store")),
                          (bench, ("bench", "bench_serve", "bench_store")), (serve, ("serve",)), (evaluate, ("eval_cmd", "eval_store"))):  # fmt: skip
        for name in names:
            main.add_command(getattr(module, name))


_register()

if __name__ == "__main__":
    sys.exit(main())
