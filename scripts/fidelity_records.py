"""Collect every accuracy figure of the recipe into docs/results/fidelity.json, one record each.

A record is {"data", "layers", "compress", "variant", "metric", "student", "teacher", "command"}:
what was compared, the student's and the teacher's score on the same held-out examples, and the
dtx command that produced it, rebuilt from the report itself (its paths and non-default
settings), so records can be compared run over run without reading prose.

    .venv/bin/python scripts/fidelity_records.py --results docs/results [--results docs/results/h200] -o docs/results/fidelity.json
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path

from dtx.atomic import write_json
from dtx.train.config import DistillConfig

DATA_NAMES = {"disfl_qa": "Disfl-QA", "vitaminc": "VitaminC"}


def data_name(path: str) -> str:
    return next((v for k, v in DATA_NAMES.items() if k in Path(path).name), Path(path).name)


# What a report written before a setting existed ran with: the first recipe had no negatives, compared
# attention probabilities at weight 0.5 and only the last hidden layer.
FIRST_RECIPE = {"negatives": 0.0, "attention_target": "probs", "attention_weight": 0.5, "cross_layers": False, "input_layer": False}


def recipe_tag(config: dict) -> str:
    """The recipe a distillation config ran, for a record's variant: "" for the first recipe, else its new settings."""
    if "attention_target" not in config:
        return ""
    parts = [f"negatives {config['negatives']:g}"] if config.get("negatives") else []
    parts.append(f"attention {config['attention_target']} x{config['attention_weight']:g}")
    layerwise = [name.replace("_", " ") for name in ("cross_layers", "input_layer") if config.get(name)]
    if layerwise:
        parts.append("layer-wise: " + " + ".join(layerwise))
    return " [" + ", ".join(parts) + "]"


def distill_flags(config: dict) -> str:
    """The options of a distillation config that differ from dtx's defaults, as CLI flags."""
    flags = []
    for key, default in asdict(DistillConfig()).items():
        value = config.get(key, FIRST_RECIPE.get(key, default))
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
        variant = row["variant"] + recipe_tag({**cfg["distill"], **settings}) + "".join(f" {k}={v}" for k, v in settings.items())
        records.append({
            "data": data_name(report["data"]), "layers": row["layers"], "compress": row["compress"], "variant": variant,
            "metric": row["metric"], "student": row["student"], "teacher": row["teacher"], "command": command,
            **({"device": report["device"]} if report.get("device") else {}),
        })  # fmt: skip
    return records


def eval_record(path: Path, layers: str, compress: int, variant: str) -> dict:
    r = json.loads(path.read_text())
    metric = "f1" if r["task"] == "qa" else "accuracy"
    return {
        "data": data_name(r["data"]), "layers": layers, "compress": compress, "variant": variant, "metric": metric,
        "student": r["student"][metric], "teacher": r["teacher"][metric], "command": f"dtx eval {r['model']} --data {r['data']}",
    }  # fmt: skip


def open_domain_record(path: Path, layers: str, compress: int) -> dict:
    r = json.loads(path.read_text())
    return {
        "data": data_name(r["data"]), "layers": layers, "compress": compress, "variant": f"BM25 top-{r['candidates']} + read (fp16 store)",
        "metric": "f1", "student": r["student"]["f1"], "teacher": r["teacher"]["f1"],
        "command": f"dtx eval-store {r['store']} --data {r['data']} -k {r['candidates']}",
    }  # fmt: skip


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
    sweeps = sorted(results.glob("*-sweep*.json")) + sorted(results.glob("*-ablation*.json"))  # a sweep may be split over runs
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
        records.append(open_domain_record(results / "disflqa-open-domain.json", *best))
    return records


if __name__ == "__main__":
    main()
