"""Collect every accuracy figure of the recipe into docs/results/fidelity.json, one record each.

A record is {"data", "layers", "compress", "variant", "metric", "student", "teacher", "command"}:
what was compared, the student's and the teacher's score on the same held-out examples, and the
dtx command that produced it, rebuilt from the report itself (its paths and non-default
settings), so records can be compared run over run without reading prose.

    .venv/bin/python scripts/fidelity_records.py --results docs/results [--results docs/results/h200] -o docs/results/fidelity.json

A folder may also hold one student's run (`student.json`, its checkpoint's decoupled.json): its
distillation on gold paragraphs, `eval-<engine>.json` per engine (INT8 ones with `speedup_vs_fp32`
from the interleaved `bench-<engine>-*.json`, else from an interleaved scheme table `int8-*.json` of
scripts/int8_schemes.py, and the CPU that measured it), and `open-domain.json` - an
`eval-store --no-teacher` run, whose teacher row is the report elsewhere in the results with the same
`candidates_digest` (the same candidates for every question). A folder whose student.json names
`qat_of` (a sibling folder) holds a quantization-aware phase run on that folder's trained student.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path

from dtx.atomic import write_json
from dtx.train.config import BEFORE_SETTING, DistillConfig

DATA_NAMES = {"disfl_qa": "Disfl-QA", "vitaminc": "VitaminC"}


def data_name(path: str) -> str:
    return next((v for k, v in DATA_NAMES.items() if k in Path(path).name), Path(path).name)


# What a report written before a setting existed ran with: the first recipe had no negatives, compared
# attention probabilities at weight 0.5 and only the last hidden layer.
FIRST_RECIPE = {"negatives": 0.0, "attention_target": "probs", "attention_weight": 0.5, "cross_layers": False, "input_layer": False}


def examples(n: int, qa: bool) -> str:
    """A training subsample as a variant names it: "6000 questions", "12000 pairs"."""
    return f"{n} {'questions' if qa else 'pairs'}"


def recipe_tag(config: dict, qa: bool = True) -> str:
    """The recipe a distillation config ran, for a record's variant: "" for the first recipe, else its new settings.

    A training subsample is named ("12000 pairs"), so a run on part of the data never shares a row with
    one on all of it; hard negatives only where they exist (QA: a pair run's config carries the default
    but reads none).
    """
    if "attention_target" not in config:
        return ""
    parts = [f"{config['epochs']} epochs"] if config.get("epochs", DistillConfig.epochs) != DistillConfig.epochs else []  # a schedule other than the default's
    parts += [examples(config["train_limit"], qa)] if config.get("train_limit") else []
    parts += [f"negatives {config['negatives']:g}"] if qa and config.get("negatives") else []
    side = config.get("augment_side", DistillConfig.augment_side)
    parts += [f"augment {config['augment']:g}" + (f" {side}" if side != DistillConfig.augment_side else "")] if config.get("augment") else []  # teacher-scored copies (dtx.data.augment)
    if config.get("select_percent", BEFORE_SETTING["select_percent"]):  # epochs chosen apart from the reported passages
        parts.append(f"epoch kept on a {config['select_percent']}% selection split")
    if config.get("labels_only"):  # no teacher: no distillation terms to name
        return " [" + ", ".join(parts) + "]" if parts else ""
    parts.append(f"attention {config['attention_target']} x{config['attention_weight']:g}")
    layerwise = [name.replace("_", " ") for name in ("cross_layers", "input_layer") if config.get(name)]
    if layerwise:
        parts.append("layer-wise: " + " + ".join(layerwise))
    if config.get("qat_epochs"):
        subsample = f" on {examples(config['qat_train_limit'], qa)}" if config.get("qat_train_limit") else ""  # QAT on part of the student's data
        parts.append(f"QAT {config['qat_epochs']} epoch(s) {config.get('qat_scheme', DistillConfig.qat_scheme)} at lr {config.get('qat_lr', DistillConfig.qat_lr):g}{subsample}")
    return " [" + ", ".join(parts) + "]"


def distill_flags(config: dict) -> str:
    """The options of a distillation config that differ from dtx's defaults, as CLI flags."""
    flags = []
    for key, default in asdict(DistillConfig()).items():
        value = config.get(key, {**BEFORE_SETTING, **FIRST_RECIPE}.get(key, default))
        if value != default and key not in ("labels_only",):
            flags.append(f"--{key.replace('_', '-')} {value}" if not isinstance(value, bool) else f"--{'' if value else 'no-'}{key.replace('_', '-')}")
    return (" " + " ".join(flags)) if flags else ""


def sweep_records(path: Path) -> list[dict]:
    report = json.loads(path.read_text())
    cfg = report["config"]
    records = []
    for row in report["rows"]:
        settings = row.get("settings") or {}
        command = (
            f"dtx sweep {report['teacher']} --data {report['data']} --splits {row['split']} -k {row['compress']} "
            f"--variants {row['variant']}{distill_flags({**cfg['distill'], **settings})}"
        )
        variant = row["variant"] + recipe_tag({**cfg["distill"], **settings}, qa=row["metric"] == "f1") + "".join(f" {k}={v}" for k, v in settings.items())
        records.append({
            "data": data_name(report["data"]), "layers": row["layers"], "compress": row["compress"], "variant": variant,
            "metric": row["metric"], "student": row["student"], "teacher": row["teacher"], "command": command,
            **({"device": report["device"]} if report.get("device") else {}),
        })  # fmt: skip
    return records


def eval_record(path: Path, layers: str, compress: int, variant: str, int8_engine: str | None = None) -> dict:
    """The record of a `dtx eval --json` report; `int8_engine` (its result name) puts the build command first."""
    r = json.loads(path.read_text())
    metric = "f1" if r["task"] == "qa" else "accuracy"
    command = f"dtx eval {r['model']} --data {r['data']}"
    variant += CALIBRATED if calibrated(r) else ""
    if int8_engine:
        command = f"{int8_build_command(int8_engine, r['model'], r['data'])} && {command}"
    return {
        "data": data_name(r["data"]), "layers": layers, "compress": compress, "variant": variant, "metric": metric,
        "student": r["student"][metric], "teacher": r["teacher"][metric], "command": command,
    }  # fmt: skip


CALIBRATED = ", calibrated no-answer thresholds"  # a variant read at the thresholds the checkpoint records


def calibrated(report: dict) -> bool:
    """Whether a report's readers answered at calibrated no-answer thresholds (any not 0)."""
    return any(report.get("no_answer_threshold", {}).values())


def open_domain_records(path: Path, layers: str, compress: int, root: Path | None = None, tag: str = "", meta: dict | None = None) -> list[dict]:
    """A retrieve-then-read record; a student-only report (`--no-teacher`) takes the teacher row of the report under
    `root` with the same candidates_digest, and its command names both runs. A report read at calibrated
    thresholds gives two: at them, and at 0 (the same reads, by the uncalibrated rule), side by side."""
    r = json.loads(path.read_text())
    command = f"dtx eval-store {r['store']} --data {r['data']} -k {r['candidates']}" + (f" --limit {r['limit']}" if r.get("limit") else "")
    teacher = r["teacher"]
    if teacher is None:
        teacher, store = digest_teacher(root, r["candidates_digest"], (meta or {}).get("source"), (meta or {}).get("teacher_sha256"))
        command += f" --no-teacher (teacher: dtx eval-store {store} ..., same candidates_digest {r['candidates_digest'][:12]})"
    base = {"data": data_name(r["data"]), "layers": layers, "compress": compress, "metric": "f1", "command": command}
    variant = f"BM25 top-{r['candidates']} + read (fp16 store){tag}"
    if not calibrated(r):
        return [{**base, "variant": variant, "student": r["student"]["f1"], "teacher": teacher["f1"]}]
    zero = r["at_threshold_0"]
    if zero["teacher"] is None:
        raise SystemExit(f"{path}: a calibrated student-only report; run eval-store with the teacher (its calibrated row is the student's own checkpoint's)")
    return [{**base, "variant": variant, "student": zero["student"]["f1"], "teacher": zero["teacher"]["f1"], "command": command + " (at_threshold_0)"},
            {**base, "variant": variant + CALIBRATED, "student": r["student"]["f1"], "teacher": teacher["f1"]}]  # fmt: skip


def layers_of(decoupling: dict) -> str:
    return f"{decoupling['split']}/{decoupling['num_layers'] - decoupling['split']}"


def student_recipe(meta: dict, root: Path) -> tuple[dict, str]:
    """(the distillation config its variant names, the commands that made it) of a run folder's student (its
    student.json `meta`): decouple, then distill. A QAT run on a sibling folder's trained student (`qat_of`) is
    that student's recipe plus the QAT settings, and its commands followed by the QAT distill on it."""
    rep, dec = meta["distill"], meta["decoupling"]
    config = rep["config"]
    if meta.get("qat_of"):
        base, base_command = student_recipe(json.loads((root / meta["qat_of"] / "student.json").read_text()), root)
        own = config.get("train_limit")  # QAT may read fewer examples than the student it starts from
        config = {**base, **{k: config[k] for k in ("qat_epochs", "qat_lr", "qat_scheme")}, **({"qat_train_limit": own} if own and own != base.get("train_limit") else {})}
        ckpt, first = "STUDENT", f"{base_command} -o STUDENT"
    else:
        ckpt, first = "CKPT", f"dtx decouple {meta['source']} --split {dec['split']} --compress {dec['compress']} -o CKPT"
    labels_only = " --labels-only" if rep["config"].get("labels_only") else ""
    return config, f"{first} && dtx distill {ckpt} --data data/{Path(rep['data']).name}{distill_flags(rep['config'])}{labels_only}"


def student_records(folder: Path, root: Path) -> list[dict]:
    """The records of one student run's folder (see the module docstring); [] where it holds none."""
    if not (folder / "student.json").is_file():
        return []
    meta = json.loads((folder / "student.json").read_text())
    rep, dec = meta["distill"], meta["decoupling"]
    metric = "f1" if "f1" in rep["final"]["student"] else "accuracy"
    labels_only = bool(rep["config"].get("labels_only"))  # the ablation: the same schedule with no teacher
    config, command = student_recipe(meta, root)
    layers, compress, tag = layers_of(dec), dec["compress"], recipe_tag(config, qa=metric == "f1")
    records = [{
        "data": data_name(rep["data"]), "layers": layers, "compress": compress, "variant": ("labels-only" if labels_only else "distill") + tag, "metric": metric,
        "student": rep["final"]["student"][metric], "teacher": rep["final"]["teacher"][metric], "command": command,
    }]  # fmt: skip
    p50, schemes = bench_p50(folder), scheme_speedups(folder)
    for path in sorted(folder.glob("eval-*.json")):
        engine = path.stem.removeprefix("eval-")
        variant = ("fp32 engine (ONNX Runtime)" if engine == "fp32" else int8_variant(engine)) + tag
        record = eval_record(path, layers, compress, variant, engine if engine.startswith("int8") else None)
        if engine.startswith("int8") and engine in p50 and "fp32" in p50:
            record |= {"speedup_vs_fp32": p50["fp32"] / p50[engine], "cpu": bench_cpu(folder)}
        elif engine in schemes:  # no bench of its own: the interleaved scheme table's ratio
            record |= schemes[engine]
        records.append(record)
    for path in sorted(folder.glob("open-domain*.json")):  # open-domain.json: the fp32 engine's store; open-domain-<engine>.json
        engine = path.stem.removeprefix("open-domain").lstrip("-")
        records += open_domain_records(path, layers, compress, root, (f", {engine} engine" if engine else "") + tag, meta)
    return records


def _int8_parts(engine: str) -> tuple[str, str | None]:
    """(scheme, SmoothQuant alpha or None) of an INT8 engine's result name: int8-<scheme>[-smooth<alpha>]."""
    scheme, _, alpha = engine.removeprefix("int8-").partition("-smooth")
    return scheme, alpha or None


def int8_variant(engine: str) -> str:
    scheme, alpha = _int8_parts(engine)
    return f"int8 engine, dynamic {scheme}" + (f", SmoothQuant alpha {alpha}" if alpha else "")


def int8_build_command(engine: str, engine_dir: str, data: str) -> str:
    """The build-engine command an INT8 result name stands for (the export is the student's `dtx export`)."""
    scheme, alpha = _int8_parts(engine)
    smooth = f" --int8-smooth {alpha}" if alpha else ""
    return f"dtx build-engine CKPT-onnx --int8 --int8-scheme {scheme}{smooth} --calib data/{Path(data).name} -o {engine_dir}"


def bench_p50(folder: Path) -> dict[str, float]:
    """Each engine's decoupled p50 (ms), the median over its interleaved `bench-<engine>-<time>.json` runs."""
    runs: dict[str, list[float]] = {}
    for path in folder.glob("bench-*.json"):
        engine = path.stem.removeprefix("bench-").rsplit("-", 1)[0]
        runs.setdefault(engine, []).append(json.loads(path.read_text())["rows"][0]["decoupled"]["p50_ms"])
    return {engine: sorted(v)[len(v) // 2] for engine, v in runs.items()}


def scheme_speedups(folder: Path) -> dict[str, dict]:
    """INT8 engine result name -> {speedup_vs_fp32, cpu} from the folder's scheme tables (scripts/int8_schemes.py
    --json: every engine timed interleaved with FP32 in one run)."""
    out: dict[str, dict] = {}
    for path in sorted(folder.glob("int8-*.json")):
        table = json.loads(path.read_text())
        cpu, threads = table["machine"]["cpu"], table["machine"]["threads"]
        for row in table["rows"][1:]:
            alpha = row.get("smooth_alpha")
            name = f"int8-{row['name']}" + (f"-smooth{alpha:g}" if alpha is not None else "")
            out[name] = {"speedup_vs_fp32": row["speedup_vs_fp32"], "cpu": f"{cpu['model']}, {cpu['int8_isa']}, {threads} thread(s), {path.name}"}
    return out


def bench_cpu(folder: Path) -> str:
    machine = json.loads(next(iter(sorted(folder.glob("bench-*.json")))).read_text())["machine"]
    cpu = machine.get("cpu") or {}
    return f"{cpu.get('model', machine['processor'])}, {cpu.get('int8_isa', 'unknown')}, {machine['cpus']} cores"


def digest_teacher(root: Path, digest: str, source: str | None = None, teacher_sha256: dict | None = None) -> tuple[dict, str]:
    """The teacher row, and its report's store, of the report under `root` that read the same candidates with the
    same teacher. Several teachers read one store's candidates (the same held-out paragraphs give the same BM25
    candidates), so a teacher report names its teacher (`dtx eval-store` writes the sha256 of the teacher's
    weights and the directory it came from; older reports carry `teacher_source`, added by hand) and a
    student's row takes only its own teacher's; a report without either is taken only when it is the one
    report with those candidates."""
    found = []
    for path in sorted(root.rglob("*.json")):
        try:
            r = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            continue
        if isinstance(r, dict) and r.get("candidates_digest") == digest and r.get("teacher"):
            found.append(r)
    named = [r for r in found if (teacher_sha256 and r.get("teacher_sha256") == teacher_sha256) or (source and r.get("teacher_source") == source)]
    if len(named) == 1 or (not named and len(found) == 1 and not {"teacher_source", "teacher_sha256"} & set(found[0])):
        r = (named or found)[0]
        return r["teacher"], r["store"]
    if not found:
        raise SystemExit(f"no report under {root} read the candidates {digest[:12]}... with the teacher; run eval-store with the teacher once")
    raise SystemExit(f"{len(found)} teacher reports under {root} read the candidates {digest[:12]}... and {len(named)} of them name this student's "
                     f"teacher ({source}); give each its teacher_source")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--results", action="append", help="a folder of recipe results (repeatable; default docs/results)")
    ap.add_argument("-o", "--out", default="docs/results/fidelity.json")
    args = ap.parse_args()
    records: list[dict] = []
    for folder in args.results or ["docs/results"]:
        records += folder_records(Path(folder))
    write_json(args.out, records)
    print(f"wrote {args.out}: {len(records)} records")


def folder_records(results: Path) -> list[dict]:
    """The records of one folder of results (one run of the recipe, on one machine)."""
    records: list[dict] = []
    seen = set()
    # a sweep may be split over runs; -terms and -augment are the recipe's grids of the distillation terms and of augmentation
    sweeps = [p for kind in ("sweep", "ablation", "terms", "augment") for p in sorted(results.glob(f"*-{kind}*.json"))]
    for path in sweeps:
        if path.is_file():
            for rec in sweep_records(path):
                key = (rec["data"], rec["layers"], rec["compress"], rec["variant"])
                if key not in seen:  # the ablation repeats the sweep's distill cell
                    seen.add(key)
                    records.append(rec)
    best = ("2/4", 4)  # the student the recipe exports (scripts/recipe.sh, step engines)
    engines = [("disflqa-eval-qa-onnx.json", "fp32 export (ONNX Runtime)"), ("disflqa-eval-qa-fp16.json", "fp16 engine"), ("disflqa-eval-qa-int8.json", "int8 engine")]
    engines += [(p.name, f"int8 engine, {p.stem.rsplit('-kf', 1)[1]} MatMuls per graph kept float") for p in sorted(results.glob("disflqa-eval-qa-int8-kf*.json"))]
    for name, variant in engines:
        if (results / name).is_file():
            records.append(eval_record(results / name, *best, variant))
    if (results / "disflqa-open-domain.json").is_file():
        records += open_domain_records(results / "disflqa-open-domain.json", *best)
    for folder in sorted(p for p in results.iterdir() if p.is_dir()):
        records += student_records(folder, results)
    return records


if __name__ == "__main__":
    main()
