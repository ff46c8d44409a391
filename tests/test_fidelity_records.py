"""scripts/fidelity_records.py: a student run's folder becomes records that name what ran.

The published accuracy table compares runs turn over turn by (data, layers, compress, variant), so two
runs of different schedules must not share a variant, every figure must carry the command that made
it, an INT8 row its speed-up and CPU, and a student-only retrieve-then-read row the teacher row that
read the same candidates.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dtx.train.config import DistillConfig


@pytest.fixture(scope="module")
def fr(script):
    return script("fidelity_records")


def _scores(f1: float) -> dict:
    return {"f1": f1, "exact": f1 - 8, "HasAns_f1": f1 + 2, "NoAns_f1": f1 - 6, "total": 779}


def _student_run(folder: Path, epochs: int, f1: float) -> None:
    """A run folder as a session publishes it: the checkpoint's decoupled.json, its engines' evals, a student-only eval-store."""
    folder.mkdir(parents=True)
    config = {**DistillConfig().__dict__, "epochs": epochs, "min_epochs": epochs}
    meta = {
        "source": "runs/teacher-neg",
        "decoupling": {"split": 2, "num_layers": 6, "compress": 4, "task": "qa"},
        "distill": {"config": config, "data": "data/disfl_qa.task.json.gz", "final": {"student": _scores(f1), "teacher": _scores(42.26)}},
    }
    (folder / "student.json").write_text(json.dumps(meta))
    for engine, student in (("fp32", f1), ("int8-per-channel-uint8", f1 - 0.4)):
        report = {"task": "qa", "model": f"runs/{folder.name}-{engine}", "data": "data/disfl_qa.task.json.gz", "student": _scores(student), "teacher": _scores(42.26)}
        (folder / f"eval-{engine}.json").write_text(json.dumps(report))
    table = {"machine": {"cpu": {"model": "AMD EPYC", "int8_isa": "avx512-vnni"}, "threads": 1}, "rows": [{"name": "fp32"}, {"name": "per-channel-uint8", "speedup_vs_fp32": 1.83}]}
    (folder / "int8-schemes.json").write_text(json.dumps(table))
    store = {"store": f"runs/{folder.name}-store", "data": "data/disfl_qa.task.json.gz", "candidates": 20, "candidates_digest": "d1" * 32, "student": _scores(f1 - 0.5), "teacher": None}
    (folder / "open-domain.json").write_text(json.dumps(store))


def test_runs_of_two_schedules_get_distinct_variants_and_commands(fr, tmp_path):
    results = tmp_path / "results"
    _student_run(results / "short", epochs=3, f1=40.63)
    _student_run(results / "default", epochs=DistillConfig().epochs, f1=41.5)
    teacher = {"store": "runs/teacher-store", "data": "data/disfl_qa.task.json.gz", "candidates": 20, "candidates_digest": "d1" * 32, "student": _scores(30.0), "teacher": _scores(41.70)}
    (results / "teacher-open-domain.json").write_text(json.dumps(teacher))

    records = fr.folder_records(results)
    keys = [(r["data"], r["layers"], r["compress"], r["variant"]) for r in records]
    assert len(keys) == len(set(keys)) == 8, keys  # 4 records per run: distill, 2 engines, BM25

    short = [r for r in records if "3 epochs" in r["variant"]]
    default = [r for r in records if "epochs" not in r["variant"]]
    assert len(short) == len(default) == 4
    distill_short = next(r for r in short if r["variant"].startswith("distill"))
    assert "--epochs 3 --min-epochs 3" in distill_short["command"] and distill_short["student"] == pytest.approx(40.63)
    distill_default = next(r for r in default if r["variant"].startswith("distill"))
    assert "--epochs" not in distill_default["command"] and distill_default["student"] == pytest.approx(41.5)

    int8 = [r for r in records if r["variant"].startswith("int8 engine, dynamic per-channel-uint8")]
    assert len(int8) == 2
    for r in int8:
        assert r["speedup_vs_fp32"] == pytest.approx(1.83) and "avx512-vnni" in r["cpu"]
        assert r["command"].startswith("dtx build-engine CKPT-onnx --int8 --int8-scheme per-channel-uint8 --calib data/disfl_qa.task.json.gz")

    bm25 = [r for r in records if r["variant"].startswith("BM25 top-20")]
    assert len(bm25) == 2
    for r in bm25:
        assert r["teacher"] == pytest.approx(41.70) and "runs/teacher-store" in r["command"] and "--no-teacher" in r["command"]


def test_student_only_store_report_without_its_teacher_run_is_refused(fr, tmp_path):
    results = tmp_path / "results"
    _student_run(results / "lonely", epochs=3, f1=40.0)
    with pytest.raises(SystemExit, match="run eval-store with the teacher once"):
        fr.folder_records(results)


def test_pair_subsample_is_named_and_carries_no_negatives(fr, tmp_path):
    """A VitaminC run on a stated subsample: its rows name the subsample (never sharing a key with a
    full-data run) and not the QA-only hard negatives its config carries at their default."""
    folder = tmp_path / "results" / "vc"
    folder.mkdir(parents=True)
    config = {**DistillConfig().__dict__, "train_limit": 12000}
    meta = {
        "source": "runs/teacher-vc",
        "decoupling": {"split": 3, "num_layers": 6, "compress": 4, "task": "pair"},
        "distill": {"config": config, "data": "data/vitaminc.task.json.gz", "final": {"student": {"accuracy": 0.61}, "teacher": {"accuracy": 0.64}}},
    }
    (folder / "student.json").write_text(json.dumps(meta))
    [record] = fr.folder_records(tmp_path / "results")
    assert record["data"] == "VitaminC" and record["metric"] == "accuracy" and record["layers"] == "3/3"
    assert "12000 pairs" in record["variant"] and "negatives" not in record["variant"], record["variant"]
    assert "--train-limit 12000" in record["command"] and "--negatives" not in record["command"]


def test_qat_on_a_trained_student_names_both_commands(fr, tmp_path):
    """A QAT phase run on a sibling folder's trained student: its rows carry that student's recipe plus the QAT
    settings, and a command that first makes the student, then runs QAT on it (not QAT on a fresh decoupling)."""
    results = tmp_path / "results"
    _student_run(results / "base", epochs=DistillConfig().epochs, f1=41.82)
    teacher = {"store": "runs/teacher-store", "data": "data/disfl_qa.task.json.gz", "candidates": 20, "candidates_digest": "d1" * 32, "student": _scores(30.0), "teacher": _scores(41.70)}
    (results / "teacher-open-domain.json").write_text(json.dumps(teacher))
    qat = results / "base-qat"
    qat.mkdir()
    config = {**DistillConfig().__dict__, "epochs": 0, "phase1_epochs": 0, "pca_init": False, "qat_epochs": 1}
    meta = {
        "source": "runs/teacher-neg", "qat_of": "base",
        "decoupling": {"split": 2, "num_layers": 6, "compress": 4, "task": "qa"},
        "distill": {"config": config, "data": "data/disfl_qa.task.json.gz", "final": {"student": _scores(40.8), "teacher": _scores(42.26)}},
    }
    (qat / "student.json").write_text(json.dumps(meta))
    records = [r for r in fr.folder_records(results) if "QAT" in r["variant"]]
    assert len(records) == 1
    [r] = records
    assert r["variant"].startswith("distill [negatives 0.5") and "QAT 1 epoch(s) per-channel-uint8 at lr 1e-05" in r["variant"] and "0 epochs" not in r["variant"]
    first, qat_run = r["command"].split(" -o STUDENT && ")
    assert first.startswith("dtx decouple runs/teacher-neg") and "--qat-epochs" not in first
    assert qat_run.startswith("dtx distill STUDENT --data data/disfl_qa.task.json.gz") and "--epochs 0" in qat_run and "--qat-epochs 1" in qat_run
    assert "on 3000 questions" not in r["variant"]
    # QAT on fewer questions than its student read says so in its variant, not only in its command
    meta["distill"]["config"] = {**config, "train_limit": 3000}
    (qat / "student.json").write_text(json.dumps(meta))
    [r] = [r for r in fr.folder_records(results) if "QAT" in r["variant"]]
    assert "QAT 1 epoch(s) per-channel-uint8 at lr 1e-05 on 3000 questions" in r["variant"] and "--train-limit 3000" in r["command"], r


def test_augmented_run_is_its_own_variant(fr, tmp_path):
    """A student trained with teacher-scored copies never shares a row with one trained without them."""
    for name, augment, side in (("plain", 0.0, "question"), ("aug", 1.0, "question"), ("augp", 1.0, "passage")):
        folder = tmp_path / "results" / name
        folder.mkdir(parents=True)
        config = {**DistillConfig().__dict__, "augment": augment, "augment_side": side}
        meta = {
            "source": "runs/teacher-neg",
            "decoupling": {"split": 3, "num_layers": 6, "compress": 4, "task": "qa"},
            "distill": {"config": config, "data": "data/disfl_qa.task.json.gz", "final": {"student": _scores(37.0 + augment), "teacher": _scores(42.26)}},
        }
        (folder / "student.json").write_text(json.dumps(meta))
    records = fr.folder_records(tmp_path / "results")
    [aug] = [r for r in records if "augment 1," in r["variant"]]
    [augp] = [r for r in records if "augment 1 passage" in r["variant"]]
    [plain] = [r for r in records if "augment" not in r["variant"]]
    assert aug["student"] == augp["student"] == 38.0 and plain["student"] == 37.0
    assert "--augment 1.0" in aug["command"] and "--augment" not in plain["command"] and "--augment-side" not in aug["command"]
    assert "--augment-side passage" in augp["command"]


def test_recipe_term_grids_become_one_record_per_cell(fr, tmp_path):
    """scripts/recipe.sh's `terms` step writes <data>-terms.json and <data>-augment.json: every cell is a record of its
    own, and its command switches off exactly the terms that cell ran without."""
    from dataclasses import asdict

    from dtx.train.sweep import SweepConfig

    results = tmp_path / "results"
    results.mkdir()
    for kind, cells in (("terms", [{"cross_layers": c, "input_layer": i} for c in (True, False) for i in (True, False)]), ("augment", [{"augment": a} for a in (0.0, 1.0)])):
        cfg = SweepConfig([3], [4], DistillConfig(), grid={k: sorted({c[k] for c in cells}) for k in cells[0]})
        rows = [{"split": 3, "compress": 4, "layers": "3/3", "variant": "distill", "metric": "f1", "settings": c, "student": 30.0 + n, "teacher": 42.26} for n, c in enumerate(cells)]
        report = {"teacher": "runs/recipe/teacher-disflqa", "data": "data/disfl_qa.task.json.gz", "device": "cpu", "config": asdict(cfg), "rows": rows}
        (results / f"disflqa-{kind}.json").write_text(json.dumps(report))
    records = fr.folder_records(results)
    assert len(records) == 6 and len({r["variant"] for r in records}) == 6
    by_settings = {r["variant"].split("] ", 1)[1]: r for r in records}
    none = by_settings["cross_layers=False input_layer=False"]
    assert "--no-cross-layers" in none["command"] and "--no-input-layer" in none["command"] and "layer-wise" not in none["variant"]
    both = by_settings["cross_layers=True input_layer=True"]
    assert "--no-" not in both["command"] and "layer-wise: cross layers + input layer" in both["variant"]
    assert "--augment 1.0" in by_settings["augment=1.0"]["command"] and "--augment" not in by_settings["augment=0.0"]["command"]
    assert sorted(r["student"] for r in records) == [30.0, 30.0, 31.0, 31.0, 32.0, 33.0]


def test_student_only_row_takes_its_own_teacher_when_two_teachers_read_the_same_candidates(fr, tmp_path):
    """The held-out paragraphs give every store the same BM25 candidates, so two teachers' reports share a digest:
    a student's BM25 row must take the row of the teacher it was distilled from (by its weights' sha256, else its
    directory), and a second, unnamed report makes the match ambiguous, refused rather than guessed."""
    results = tmp_path / "results"
    _student_run(results / "old", epochs=3, f1=40.0)
    _student_run(results / "new", epochs=5, f1=43.0)
    meta = json.loads((results / "new" / "student.json").read_text())
    (results / "new" / "student.json").write_text(json.dumps({**meta, "source": "/elsewhere/teacher-neg6", "teacher_sha256": {"model.safetensors": "6" * 64}}))
    # the old teacher's report names its directory (added by hand); the new one was written by eval-store on
    # another machine: another path, but the same weights
    for name, who, f1 in (("teacher-open-domain", {"teacher_source": "runs/teacher-neg"}, 41.70),
                          ("teacher6-open-domain", {"teacher_source": "runs/teacher-neg6", "teacher_sha256": {"model.safetensors": "6" * 64}}, 43.90)):
        report = {"store": f"runs/{name}-store", "data": "data/disfl_qa.task.json.gz", "candidates": 20, "candidates_digest": "d1" * 32,
                  "student": _scores(30.0), "teacher": _scores(f1), **who}  # fmt: skip
        (results / f"{name}.json").write_text(json.dumps(report))
    bm25 = {round(r["student"], 2): r for r in fr.folder_records(results) if r["variant"].startswith("BM25 top-20")}
    assert bm25[39.5]["teacher"] == pytest.approx(41.70) and "teacher-open-domain-store" in bm25[39.5]["command"]
    assert bm25[42.5]["teacher"] == pytest.approx(43.90) and "teacher6-open-domain-store" in bm25[42.5]["command"]
    unnamed = json.loads((results / "teacher6-open-domain.json").read_text())
    del unnamed["teacher_source"], unnamed["teacher_sha256"]
    (results / "teacher6-open-domain.json").write_text(json.dumps(unnamed))
    with pytest.raises(SystemExit, match="give each its teacher_source"):
        fr.folder_records(results)
