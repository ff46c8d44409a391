"""The training loop shared by finetune and distill: one schedule per phase, a fresh order every
epoch, early stopping that keeps the best epoch, exact resume mid-epoch, and the teacher cache."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from dtx.errors import DtxError
from dtx.model.checkpoint import load_checkpoint
from dtx.model.decouple import decouple
from dtx.model.surgery import build_coupled
from dtx.train import distill as distill_mod
from dtx.train.config import DistillConfig, FinetuneConfig
from dtx.train.distill import TeacherCache, distill, make_batch, pair_examples
from dtx.train.finetune import finetune_pair
from dtx.train.loop import EarlyStopping, epoch_batches, optimizer_and_schedule


def test_schedule_warms_up_once_and_decays_across_epochs():
    """One schedule for the whole phase: the saw-tooth (a reset to the peak every epoch) must not come back."""
    p = torch.nn.Parameter(torch.zeros(1))
    optim, sched = optimizer_and_schedule([p], 1.0, 0.0, total_steps=30, warmup=0.2)
    lrs = []
    for _ in range(30):
        lrs.append(sched.get_last_lr()[0])
        p.grad = torch.ones(1)
        optim.step()
        sched.step()
    peak = int(np.argmax(lrs))
    assert peak == 5 and lrs[0] < lrs[peak] and lrs[-1] < lrs[peak] / 5
    assert all(b <= a for a, b in zip(lrs[peak:], lrs[peak + 1 :])), "the learning rate rose again after the warm-up"


def test_epoch_batches_cover_everything_and_change_every_epoch_and_phase():
    rng = np.random.default_rng(1)
    lengths = rng.integers(10, 200, size=500).tolist()
    e0, e1 = epoch_batches(lengths, 16, 0, "phase2", 0), epoch_batches(lengths, 16, 0, "phase2", 1)
    p1 = epoch_batches(lengths, 16, 0, "phase1", 0)
    for batches in (e0, e1, p1):
        assert sorted(i for b in batches for i in b) == list(range(500))
    assert e0 != e1 and e0 != p1, "two epochs (or two phases) saw the batches in the same order"
    assert e0 == epoch_batches(lengths, 16, 0, "phase2", 0), "an epoch's order must be reproducible (resume relies on it)"
    padded = lambda batches: sum(len(b) * max(lengths[i] for i in b) for b in batches)  # noqa: E731
    shuffled = [list(b) for b in np.array_split(rng.permutation(500), len(e0))]
    assert padded(e0) < 0.8 * padded(shuffled), "length bucketing should cut padding well below random batches"


def test_early_stopping_keeps_the_best_epoch_and_respects_min_epochs():
    stop = EarlyStopping(patience=1, min_epochs=3)
    assert stop.update(0.5) and stop.update(0.7) and not stop.stop
    assert not stop.update(0.6) and stop.stop and stop.best_epoch == 2
    early = EarlyStopping(patience=1, min_epochs=3)
    early.update(0.7)
    early.update(0.6)
    assert not early.stop, "must not stop before min_epochs"


@pytest.fixture()
def pair_data(tmp_path):
    rng = np.random.default_rng(0)
    words = ["river", "city", "king", "music", "water", "light", "house", "school"]
    rows = []
    for i in range(96):  # ~86 training pairs: 6 steps an epoch
        label = ["north", "south"][i % 2]
        rows.append({"question": "which way", "passage": " ".join(rng.choice(words, 4 + i % 9)) + f" {label} {i} .", "label": label})
    f = tmp_path / "p.jsonl"
    f.write_text("\n".join(json.dumps(r) for r in rows))
    return f


def _weights(path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(path / "model.safetensors"))


def test_finetune_early_stopping_publishes_the_best_epoch(model_dir, pair_data, tmp_path, monkeypatch):
    """Selection scores 0.5, 0.9, 0.6, 0.7: training stops after epoch 3 and OUT holds epoch 2's weights, whatever
    dev says (its best is epoch 3); the report's dev score is epoch 2's."""
    from dtx.train import finetune as ft

    select, dev = iter([0.5, 0.9, 0.6, 0.7]), iter([0.8, 0.4, 0.95, 0.1])
    snapshots = []
    real_fit = ft.fit

    def scripted_fit(model, tokenizer, lengths, make_batch, score, *a, **k):
        def fake_score():
            snapshots.append({k: v.clone() for k, v in model.state_dict().items()})
            s, d = next(select), next(dev)
            return s, {"select": {"accuracy": s}, "dev": {"accuracy": d, "macro_f1": d, "pairs": 1}}

        return real_fit(model, tokenizer, lengths, make_batch, fake_score, *a, **k)

    monkeypatch.setattr(ft, "fit", scripted_fit)
    cfg = FinetuneConfig(epochs=4, patience=1, min_epochs=3, batch_size=16, lr=1e-3, max_len=32, bf16=False)
    report = finetune_pair(model_dir("bert", "pair"), pair_data, tmp_path / "out", cfg, progress=False)
    assert [h["select"]["accuracy"] for h in report["history"]] == [0.5, 0.9, 0.6] and report["best_epoch"] == 2
    assert report["dev"]["accuracy"] == 0.4 and report["select"]["accuracy"] == 0.9
    published = _weights(tmp_path / "out")
    key = next(k for k in published if k.endswith("classifier.weight"))
    assert torch.equal(published[key], snapshots[1][key]) and not torch.equal(published[key], snapshots[2][key])
    assert not (tmp_path / "out" / ft.STATE_FILE).exists(), "a finished run leaves no training state behind"
    with pytest.raises(DtxError, match="already exists"):
        finetune_pair(model_dir("bert", "pair"), pair_data, tmp_path / "out", cfg, progress=False)


class Kill(BaseException):
    pass


def test_finetune_resumes_mid_epoch_exactly(model_dir, pair_data, tmp_path, monkeypatch):
    """Killed in the middle of epoch 2 and resumed, a run ends with the weights of one never killed (and never
    saved mid-epoch: the killed run saves after every step, so saving is shown to change nothing either)."""
    from dtx.train import finetune as ft

    cfg = FinetuneConfig(epochs=2, min_epochs=2, batch_size=16, lr=1e-3, max_len=32, bf16=False, save_every=0.0)
    whole = finetune_pair(model_dir("bert", "pair"), pair_data, tmp_path / "whole", replace(cfg, save_every=600.0), progress=False)
    steps = whole["steps_per_epoch"]
    calls = {"n": 0}
    real_clip = torch.nn.utils.clip_grad_norm_

    def dying_clip(*a, **k):
        calls["n"] += 1
        if calls["n"] == steps + steps // 2:
            raise Kill
        return real_clip(*a, **k)

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", dying_clip)
    with pytest.raises(Kill):
        finetune_pair(model_dir("bert", "pair"), pair_data, tmp_path / "killed", cfg, progress=False)
    state = torch.load(tmp_path / "killed" / ft.STATE_FILE, weights_only=False)
    assert state["epoch"] == 1 and 0 < state["position"] < steps
    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", real_clip)
    resumed = finetune_pair(model_dir("bert", "pair"), pair_data, tmp_path / "killed", cfg, progress=False)
    assert [h["dev"] for h in resumed["history"]] == [h["dev"] for h in whole["history"]]
    a, b = _weights(tmp_path / "whole"), _weights(tmp_path / "killed")
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a), "the resumed run diverged from the uninterrupted one"


@pytest.fixture()
def pair_ckpt(model_dir, tmp_path):
    ckpt = decouple(model_dir("bert", "pair"), tmp_path / "ckpt", split=2, compress=2, max_question_len=16, max_passage_len=32)
    labels = list(ckpt.teacher().config.id2label.values())
    rng = np.random.default_rng(0)
    words = "river city king music water light house school north south".split()
    rows = [{"question": " ".join(rng.choice(words, 3)), "passage": " ".join(rng.choice(words, 3 + i % 10)) + f" {i}", "label": labels[i % 3]} for i in range(64)]
    data = tmp_path / "pairs.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in rows))
    return ckpt.path, data


def _teacher_and_examples(pair_ckpt, n: int):
    """The checkpoint, its segmenter, its frozen coupled teacher and the first `n` labelled pairs as examples."""
    from dtx.data.pairs import read_pairs

    ckpt = load_checkpoint(pair_ckpt[0])
    seg = ckpt.segmenter()
    label2id = {v: k for k, v in ckpt.teacher().config.id2label.items()}
    return ckpt, seg, build_coupled(ckpt.teacher()).eval(), pair_examples(seg, read_pairs(pair_ckpt[1])[:n], label2id)


def test_teacher_cache_equals_the_full_teacher(pair_ckpt):
    """fp32 cache: the last layer recomputed from cached states equals the teacher run end to end."""
    _, seg, teacher_c, examples = _teacher_and_examples(pair_ckpt, 40)
    cache = TeacherCache(teacher_c, seg, examples, False, 8, torch.device("cpu"), bf16=False, progress=False)
    indices = [3, 17, 0, 25, 39, 8]  # another batching than the cache's (sorted by length)
    b = make_batch(seg, [examples[i] for i in indices], qa=False)
    joined = distill_mod._joined(b)
    with torch.no_grad():
        states, (logits,) = cache.outputs(indices, joined[1])
        th = states[-1]
        full = teacher_c.encoder.encode(*joined)
        (ref,) = teacher_c.head(full)
    real = joined[1].bool()
    assert (th[real] - full[real]).abs().max() < 1e-5 and (logits - ref).abs().max() < 1e-5


def test_teacher_cache_from_the_split_gives_every_layer(pair_ckpt):
    """Layer-wise supervision: a cache started at layer N recomputes the teacher's states after N, ..., L layers exactly."""
    from dtx.model.decoupled import layer_states

    ckpt, seg, teacher_c, examples = _teacher_and_examples(pair_ckpt, 24)
    split = ckpt.config.split
    cache = TeacherCache(teacher_c, seg, examples, False, 8, torch.device("cpu"), bf16=False, progress=False, start=split)
    indices = [5, 0, 19, 11]
    joined = distill_mod._joined(make_batch(seg, [examples[i] for i in indices], qa=False))
    enc = teacher_c.encoder
    with torch.no_grad():
        states, _ = cache.outputs(indices, joined[1])
        ref = layer_states(enc.layers, enc.embed(*joined), joined[1])[split:]
    real = joined[1].bool()
    assert len(states) == len(enc.layers) - split + 1
    assert max(float((s[real] - r[real]).abs().max()) for s, r in zip(states, ref)) < 1e-5


def test_distill_resumes_mid_epoch_exactly(pair_ckpt, tmp_path, monkeypatch):
    """Killed in the middle of phase 2's epoch 2 and resumed, a run ends as one never killed (nor saved mid-epoch)."""
    ckpt_dir, data = pair_ckpt
    cfg = DistillConfig(epochs=2, min_epochs=2, phase1_epochs=1, batch_size=16, dev_limit=8, bf16=False, save_every=0.0)
    whole = distill(ckpt_dir, data, replace(cfg, save_every=600.0), tmp_path / "whole", progress=False)
    assert [(h["phase"], h["epoch"]) for h in whole["history"]] == [("phase1", 1), ("phase2", 1), ("phase2", 2)]
    steps = -(-whole["train_examples"] // cfg.batch_size)
    assert steps >= 3
    calls = {"n": 0}
    real_step = distill_mod._Run._step

    def dying_step(self, phase, *a, **k):
        if phase == "phase2":
            calls["n"] += 1
            if calls["n"] == steps + steps // 2:  # inside phase-2 epoch 2
                raise Kill
        return real_step(self, phase, *a, **k)

    monkeypatch.setattr(distill_mod._Run, "_step", dying_step)
    with pytest.raises(Kill):
        distill(ckpt_dir, data, cfg, tmp_path / "killed", progress=False)
    state = torch.load(tmp_path / "killed" / distill_mod.STATE_FILE, weights_only=False)
    assert state["phase"] == 1 and state["epoch"] == 1 and 0 < state["position"] < steps
    monkeypatch.setattr(distill_mod._Run, "_step", real_step)
    resumed = distill(ckpt_dir, data, cfg, tmp_path / "killed", progress=False)
    for mine, theirs in zip(resumed["history"], whole["history"], strict=True):
        assert mine["loss"] == pytest.approx(theirs["loss"], rel=1e-5)
    a, b = load_checkpoint(tmp_path / "whole").model.state_dict(), load_checkpoint(tmp_path / "killed").model.state_dict()
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    with pytest.raises(DtxError, match="other settings"):
        distill(ckpt_dir, data, DistillConfig(epochs=3, batch_size=16), tmp_path / "killed", progress=False)


def test_distill_one_schedule_per_phase(pair_ckpt, tmp_path, monkeypatch):
    """Phase 2 over 3 epochs: the learning rate at the end of each epoch keeps falling (no reset per epoch)."""
    ckpt_dir, data = pair_ckpt
    cfg = DistillConfig(epochs=3, min_epochs=3, patience=3, phase1_epochs=0, batch_size=16, dev_limit=8, bf16=False)
    report = distill(ckpt_dir, data, cfg, tmp_path / "out", progress=False)
    ends = [h["lr_end"] for h in report["history"]]
    assert len(ends) == 3 and ends[0] > ends[1] > ends[2] >= 0 and ends[0] < cfg.lr
    assert report["history"][0]["loss"]["kl"] > 0 and report["history"][0]["loss"]["attention"] > 0


needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU on this machine")


@pytest.mark.gpu
@needs_cuda
def test_finetune_on_cuda_follows_the_cpu_run(model_dir, pair_data, tmp_path, monkeypatch):
    """fp32 on the GPU: the same losses and weights as on the CPU, up to float reassociation (dropout off:
    the two devices draw different masks)."""
    monkeypatch.setattr(torch.nn.functional, "dropout", lambda x, *a, **k: x)
    cfg = FinetuneConfig(epochs=1, min_epochs=1, batch_size=16, lr=1e-3, max_len=32, bf16=False)
    cpu = finetune_pair(model_dir("bert", "pair"), pair_data, tmp_path / "cpu", cfg, progress=False, device="cpu")
    gpu = finetune_pair(model_dir("bert", "pair"), pair_data, tmp_path / "gpu", cfg, progress=False, device="cuda")
    assert gpu["history"][0]["loss"]["loss"] == pytest.approx(cpu["history"][0]["loss"]["loss"], rel=1e-3)
    a, b = _weights(tmp_path / "cpu"), _weights(tmp_path / "gpu")
    assert all(torch.allclose(a[k], b[k], atol=5e-3) for k in a)


@pytest.mark.gpu
@needs_cuda
def test_distill_on_cuda_follows_the_cpu_run(pair_ckpt, tmp_path, monkeypatch):
    """Teacher cache, attention hooks, both phases and dev scoring on the GPU give the CPU's losses (fp32,
    dropout off: the two devices draw different masks), and bf16 runs."""
    monkeypatch.setattr(torch.nn.functional, "dropout", lambda x, *a, **k: x)
    ckpt_dir, data = pair_ckpt
    cfg = DistillConfig(epochs=1, min_epochs=1, phase1_epochs=1, batch_size=16, dev_limit=8, bf16=False)
    cpu = distill(ckpt_dir, data, cfg, tmp_path / "cpu", progress=False, device="cpu")
    gpu = distill(ckpt_dir, data, cfg, tmp_path / "gpu", progress=False, device="cuda")
    for mine, theirs in zip(gpu["history"], cpu["history"], strict=True):
        for term, value in theirs["loss"].items():
            assert mine["loss"][term] == pytest.approx(value, rel=1e-3, abs=1e-5), term
    bf16 = distill(ckpt_dir, data, DistillConfig(epochs=1, min_epochs=1, phase1_epochs=1, batch_size=16, dev_limit=8), tmp_path / "bf16", progress=False, device="cuda")
    assert bf16["bf16"] and np.isfinite(bf16["history"][-1]["loss"]["total"])

