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
