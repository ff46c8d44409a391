"""Bars of the foundation issue: the decoupled model is the source model cut in two."""

from __future__ import annotations

import pytest
import torch

from dtx.model.arch import ARCHITECTURES, arch_spec
from helpers import decoupled, real_slots, tensors, texts
from tiny_models import TINY_ARCHS

from conftest import ALL_ARCHS

TOL = 1e-5


def test_registry_covers_every_architecture():
    assert set(ARCHITECTURES) <= set(TINY_ARCHS), f"no tiny test model for {set(ARCHITECTURES) - set(TINY_ARCHS)}"


def source_hidden(teacher, ids, types, split):
    """The source model's hidden state after layer `split` for ONE unpadded text."""
    spec = arch_spec(teacher.config)
    base = getattr(teacher, spec.base_attr)
    with torch.no_grad():
        out = base(input_ids=ids[None], token_type_ids=types[None], attention_mask=torch.ones_like(ids)[None], output_hidden_states=True)
    return out.hidden_states[split][0]


@pytest.mark.parametrize("arch", ALL_ARCHS)
def test_input_component_equals_source_hidden_state(arch, model_dir):
    """Questions and passages alone, and right-padded in a batch, match the source at layer N."""
    torch.manual_seed(1)
    n_layers = 6 if arch == "minilm" else 4
    for split in (0, 2, n_layers):
        teacher, model, seg = decoupled(model_dir(arch), split, compress=2)
        questions = [seg.question(t) for t in texts(split, 3, 2, 15)]
        passages = [seg.passage(t)[0] for t in texts(split + 10, 3, 5, 40)]
        for side in (questions, passages):
            lengths = {len(s) for s in side}
            assert len(lengths) > 1, "rows must carry different amounts of padding"
            ids, mask, types = tensors(seg.pad(side, max(lengths) + 3))
            with torch.no_grad():
                batched = model.input.encode(ids, mask, types)
            for row, s in enumerate(side):
                n = len(s)
                ref = source_hidden(teacher, ids[row, :n], types[row, :n], split)
                err = (batched[row, :n] - ref).abs().max().item()
                assert err < TOL, f"{arch} split {split}: max-abs {err:.2e} vs source hidden state"


def run_pair(model, seg, question: str, passage: str, q_pad: int, p_pad: int):
    q, p = seg.question(question), seg.passage(passage)[0]
    qb, pb = tensors(seg.pad([q], len(q) + q_pad)), tensors(seg.pad([p], len(p) + p_pad))
    with torch.no_grad():
        out = model(*qb, *pb)
    return real_slots(out, qb[1], pb[1], 0)


@pytest.mark.parametrize("arch", ALL_ARCHS)
@pytest.mark.parametrize("task,compress,cross_embeddings", [("qa", 1, True), ("pair", 2, True), ("qa", 4, False)])
def test_outputs_do_not_depend_on_padding(arch, task, compress, cross_embeddings, model_dir):
    if arch == "minilm" and task == "pair":
        task = "qa"  # the real encoder gets a fresh head; one task is enough there
    _, model, seg = decoupled(model_dir(arch, task), split=2, compress=compress, task=task, cross_embeddings=cross_embeddings)
    for i, (q, p) in enumerate(zip(texts(3, 3, 3, 12), texts(4, 3, 10, 40))):
        base = run_pair(model, seg, q, p, 0, 0)
        for q_pad, p_pad in ((5, 0), (0, 7), (9, 2)):
            other = run_pair(model, seg, q, p, q_pad, p_pad)
            for a, b in zip(base, other):
                err = (a - b).abs().max().item()
                assert err < TOL, f"{arch}: padding ({q_pad}, {p_pad}) changed outputs by {err:.2e}"


@pytest.mark.parametrize("arch", TINY_ARCHS)
def test_global_positions_matter(arch, model_dir):
    """Sensitivity check for the padding test: counting padded question slots as real positions changes outputs."""
    _, model, seg = decoupled(model_dir(arch), split=2)
    q, p = seg.question("what is the river"), seg.passage("the river is in paris .")[0]
    qids, qmask, qtypes = tensors(seg.pad([q], len(q) + 6))
    pb = tensors(seg.pad([p]))
    with torch.no_grad():
        qrep = model.input(qids, qmask, qtypes)
        right = model.cross(qrep, qmask, model.input(*pb), pb[1])
        wrong_pos = model.cross.embed(qrep, torch.ones_like(qmask), model.input(*pb), pb[1])[2]
        right_pos = model.cross.embed(qrep, qmask, model.input(*pb), pb[1])[2]
    assert (wrong_pos - right_pos).abs().max() > 1e-3
    assert torch.isfinite(right[0]).all()


@pytest.mark.parametrize("arch", ALL_ARCHS)
def test_sides_are_decoupled_below_the_split(arch, model_dir):
    """Inside one forward pass, each side's input-component output ignores the other side."""
    _, model, seg = decoupled(model_dir(arch), split=3, compress=2)
    captured: list[torch.Tensor] = []
    hook = model.input.register_forward_hook(lambda m, args, out: captured.append(out.detach().clone()))
    q1, q2 = seg.question("who was the first king of france"), seg.question("where is the green house")
    p1 = seg.passage("the first king of france was in paris .")
    p2 = seg.passage("a small river runs north of the city .")

    def forward(q, p):
        captured.clear()
        qb, pb = tensors(seg.pad([q])), tensors(seg.pad(p))
        with torch.no_grad():
            out = model(*qb, *pb)
        return captured[0], captured[1], out

    q_rep_a, p_rep_a, out_a = forward(q1, p1)
    q_rep_b, _, out_b = forward(q1, p2)  # same question, other passage
    _, p_rep_c, out_c = forward(q2, p1)  # other question, same passage
    assert torch.equal(q_rep_a, q_rep_b), "the passage leaked into the question's input component"
    assert torch.equal(p_rep_a, p_rep_c), "the question leaked into the passage's input component"
    # the cross component reads both sides: the passage slots see the question, the question slots the passage
    lq1 = len(q1)
    assert not torch.allclose(out_a[0][:, lq1:], out_c[0][:, len(q2):], atol=1e-4), "the cross component ignores the question"
    assert not torch.allclose(out_a[0][:, :lq1], out_b[0][:, :lq1], atol=1e-4), "the cross component ignores the passage"
    hook.remove()


@pytest.mark.parametrize("arch", TINY_ARCHS)
def test_one_question_against_many_passages(arch, model_dir):
    """bq = 1 broadcast gives the same result as repeating the question b times."""
    _, model, seg = decoupled(model_dir(arch), split=2, compress=2)
    q = seg.question("what is the city")
    ps = [seg.passage(t)[0] for t in texts(7, 4, 5, 30)]
    qb, pb = tensors(seg.pad([q])), tensors(seg.pad(ps))
    with torch.no_grad():
        one = model(*qb, *pb)
        many = model(*(t.expand(len(ps), -1) for t in qb), *pb)
    for a, b in zip(one, many):
        assert (a - b).abs().max() < TOL
