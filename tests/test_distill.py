"""Distillation on a tiny model: phase 1 touches only the codec, PCA init, the labels-only ablation (resume: test_training_loop.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from dtx.errors import DtxError
from dtx.model.checkpoint import load_checkpoint
from dtx.model.decouple import decouple
from dtx.train import distill as distill_mod
from dtx.train.distill import DistillConfig, distill


@pytest.fixture()
def pair_setup(model_dir, tmp_path):
    """A 3-label tiny teacher decoupled at 2/2 with 2x compression, and labelled pairs for it."""
    ckpt = decouple(model_dir("bert", "pair"), tmp_path / "ckpt", split=2, compress=2, max_question_len=16, max_passage_len=32)
    teacher = ckpt.teacher()
    labels = list(teacher.config.id2label.values())
    rng = np.random.default_rng(0)
    words = "river city king music water light house school north south".split()
    rows = [{"question": " ".join(rng.choice(words, 3)), "passage": " ".join(rng.choice(words, 8)) + f" {i}", "label": labels[i % 3]} for i in range(96)]
    data = tmp_path / "pairs.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in rows))
    return ckpt.path, data


def test_phase1_changes_only_the_codec(pair_setup, tmp_path):
    ckpt_dir, data = pair_setup
    before = load_checkpoint(ckpt_dir).model.state_dict()
    cfg = DistillConfig(epochs=0, phase1_epochs=1, batch_size=8, dev_limit=8)
    report = distill(ckpt_dir, data, cfg, tmp_path / "out", progress=False)
    after = load_checkpoint(tmp_path / "out").model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith(("input.compressor.", "cross.decompressor.")) for k in changed), changed
    assert report["history"][0]["phase"] == "phase1" and report["history"][0]["loss"]["ae_mse"] > 0


def test_pca_init_beats_a_random_projection(pair_setup, tmp_path):
    ckpt_dir, data = pair_setup
    ckpt = load_checkpoint(ckpt_dir)
    seg = ckpt.segmenter()
    from dtx.data.pairs import read_pairs

    label2id = {v: k for k, v in ckpt.teacher().config.id2label.items()}
    batches = [distill_mod._pair_batch(seg, read_pairs(data)[i : i + 16], label2id) for i in range(0, 64, 16)]

    def ae_error(model):
        with torch.no_grad():
            errs = [((model.cross.decompressor(model.input.compressor(h)) - h) ** 2)[b["p"][1].bool()].mean() for b in batches for h in [model.input.encode(*b["p"])]]
        return float(torch.stack(errs).mean())

    random_err = ae_error(ckpt.model)
    kept = distill_mod.pca_init(ckpt.model, batches)
    assert 0 < kept <= 1 and ae_error(ckpt.model) < random_err


def test_labels_only_ablation_and_label_check(pair_setup, tmp_path):
    ckpt_dir, data = pair_setup
    r = distill(ckpt_dir, data, DistillConfig(epochs=1, phase1_epochs=0, batch_size=16, dev_limit=8, labels_only=True), tmp_path / "abl", progress=False)
    assert r["history"][0]["loss"]["kl"] == 0 and r["history"][0]["loss"]["ce"] > 0
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"question": "a", "passage": "b c", "label": "Maybe"}))
    with pytest.raises(DtxError, match="does not know"):
        distill(ckpt_dir, bad, DistillConfig(), tmp_path / "x", progress=False)


def test_the_kept_epoch_is_chosen_on_the_selection_split(pair_setup, tmp_path):
    """Each phase-2 epoch is scored on the selection split and on dev; the kept epoch is the best on the selection
    split, and the reported (final) score is dev's at that epoch."""
    ckpt_dir, data = pair_setup
    cfg = DistillConfig(epochs=3, min_epochs=3, phase1_epochs=0, batch_size=16, labels_only=True, lr=1e-3)
    r = distill(ckpt_dir, data, cfg, tmp_path / "sel", progress=False)
    epochs = [h for h in r["history"] if h["phase"] == "phase2"]
    select = [h["select"]["student"]["accuracy"] for h in epochs]
    assert len(epochs) == 3 and r["best_epoch"] == 1 + select.index(max(select))
    assert r["final"] == epochs[r["best_epoch"] - 1]["dev"] and r["select"] == epochs[r["best_epoch"] - 1]["select"]
    assert r["select_pairs"] > 0 and r["dev_pairs"] > 0 and r["select_pairs"] + r["dev_pairs"] + r["train_pairs"] == 96


def test_qat_phase_trains_for_int8_and_build_engine_honours_it(pair_setup, tmp_path, monkeypatch):
    """--qat-epochs: a last phase runs the KD loss with the engine's INT8 MatMuls swapped in, is scored as the engine
    would run it, records its scheme in the checkpoint, the export carries it, and build-engine --int8 builds it."""
    from dtx.engines.build import BuildOptions, prepare
    from dtx.engines.manifest import EngineError
    from dtx.export.exporter import export_checkpoint
    from dtx.model.checkpoint import read_meta

    ckpt_dir, data = pair_setup
    swapped = []
    real = distill_mod.fake_quantized

    def spy(model, scheme):
        swapped.append(scheme.name)
        return real(model, scheme)

    monkeypatch.setattr(distill_mod, "fake_quantized", spy)
    cfg = DistillConfig(epochs=1, phase1_epochs=0, qat_epochs=1, qat_scheme="per-tensor-uint8", batch_size=16, dev_limit=8)
    before = load_checkpoint(ckpt_dir).model.state_dict()
    r = distill(ckpt_dir, data, cfg, tmp_path / "qat", progress=False)
    assert swapped == ["per-tensor-uint8"]
    qat = [h for h in r["history"] if h["phase"] == "qat"]
    assert len(qat) == 1 and qat[0]["loss"]["kl"] > 0 and "dev" in qat[0]
    assert r["qat"]["scheme"]["name"] == "per-tensor-uint8" and r["qat"]["before"]["student"] and r["qat"]["after"] == qat[0]["dev"]
    meta = read_meta(tmp_path / "qat")
    assert meta.int8_training == {"scheme": r["qat"]["scheme"], "epochs": 1, "lr": cfg.qat_lr}
    after = load_checkpoint(tmp_path / "qat").model.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)

    export_checkpoint(tmp_path / "qat", tmp_path / "onnx", progress=False)
    plan = prepare(tmp_path / "onnx", tmp_path / "int8", BuildOptions(precision="int8"))  # what build_engine builds from
    assert plan.scheme.name == "per-tensor-uint8" and plan.scheme_from == "checkpoint" and plan.opts.int8_keep_float == 0
    assert plan.export.checkpoint.int8_training == meta.int8_training
    override = prepare(tmp_path / "onnx", tmp_path / "int8", BuildOptions(precision="int8", int8_scheme="per-channel-uint8"))
    assert override.scheme.name == "per-channel-uint8" and override.scheme_from == "--int8-scheme"
    with pytest.raises(EngineError, match="drop --int8-smooth"):  # smoothing would change the arithmetic QAT trained for
        prepare(tmp_path / "onnx", tmp_path / "int8", BuildOptions(precision="int8", int8_smooth=0.5, calib=str(data)))
