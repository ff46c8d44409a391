"""Each distillation loss term against a hand computation (float64, fresh random inputs)."""

from __future__ import annotations

import math

import numpy as np
import torch

from dtx.train.losses import attention_mse, distillation_loss, kd_loss, masked_mse


def softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def test_kd_terms_by_hand():
    rng = np.random.default_rng(0)
    s, t = rng.normal(size=(4, 3)), rng.normal(size=(4, 3))
    y = np.array([0, 2, 1, 1])
    T = 2.5
    ce, kl = kd_loss(torch.tensor(s), torch.tensor(t), torch.tensor(y), T)
    ce_hand = -np.mean([math.log(softmax(s[i])[y[i]]) for i in range(4)])
    p, q = softmax(t / T), softmax(s / T)
    kl_hand = T**2 * np.mean(np.sum(p * (np.log(p) - np.log(q)), -1))
    assert abs(ce.item() - ce_hand) < 1e-12 and abs(kl.item() - kl_hand) < 1e-12


def test_masked_mse_ignores_padding():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(2, 5, 3)), rng.normal(size=(2, 5, 3))
    mask = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    b_pad = b.copy()
    b_pad[0, 3:] += 100.0  # differences at padding must not count
    got = masked_mse(torch.tensor(a), torch.tensor(b_pad), torch.tensor(mask)).item()
    real = [(a[i, j] - b[i, j]) for i in range(2) for j in range(5) if mask[i, j]]
    assert abs(got - np.mean(np.square(real))) < 1e-12


def test_attention_mse_over_real_rows_and_columns():
    rng = np.random.default_rng(2)
    s, t = rng.random((1, 2, 3, 3)), rng.random((1, 2, 3, 3))
    mask = np.array([[1, 1, 0]])
    got = attention_mse(torch.tensor(s), torch.tensor(t), torch.tensor(mask)).item()
    assert abs(got - np.mean(np.square(s[0, :, :2, :2] - t[0, :, :2, :2]))) < 1e-12


def test_total_combines_terms_and_masks_qa_slots():
    rng = np.random.default_rng(3)
    B, S, D = 2, 6, 4
    slots = torch.tensor([[1, 0, 0, 1, 1, 1], [1, 0, 1, 1, 1, 0]])
    s_start, t_start = torch.tensor(rng.normal(size=(B, S))), torch.tensor(rng.normal(size=(B, S)))
    s_end, t_end = torch.tensor(rng.normal(size=(B, S))), torch.tensor(rng.normal(size=(B, S)))
    y = (torch.tensor([3, 0]), torch.tensor([5, 4]))
    hs, ht = torch.tensor(rng.normal(size=(B, S, D))), torch.tensor(rng.normal(size=(B, S, D)))
    mask = torch.ones(B, S)
    terms = distillation_loss((s_start, s_end), (t_start, t_end), y, slots, (hs, ht), None, mask, 2.0, 0.4)
    expected = 0.4 * terms.ce + 0.6 * terms.kl + 0.5 * terms.hidden
    assert torch.allclose(terms.total, expected) and terms.attention.item() == 0.0
    # a non-slot position of the student never matters
    s_start2 = s_start.clone()
    s_start2[0, 1] += 50
    again = distillation_loss((s_start2, s_end), (t_start, t_end), y, slots, (hs, ht), None, mask, 2.0, 0.4)
    assert torch.allclose(again.total, terms.total)
    # without slot masking (pair tasks) the same change does matter
    plain = distillation_loss((s_start2, s_end), (t_start, t_end), y, None, (hs, ht), None, mask, 2.0, 0.4)
    assert not torch.allclose(plain.total, terms.total)


def test_layerwise_terms_enter_the_total_with_their_weights():
    """Cross-layer MSEs are averaged over the intermediate layers; every hidden term shares hidden_weight."""
    rng = np.random.default_rng(4)
    B, S, D, C = 3, 5, 4, 2
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 1, 0, 0, 0]])
    state = lambda: torch.tensor(rng.normal(size=(B, S, D)))  # noqa: E731
    last, mids, entering = (state(), state()), [(state(), state()) for _ in range(3)], (state(), state())
    logits = (torch.tensor(rng.normal(size=(B, C))),), (torch.tensor(rng.normal(size=(B, C))),)
    y = (torch.tensor([0, 1, 1]),)
    terms = distillation_loss(*logits, y, None, last, None, mask, 2.0, 0.5, 0.3, 0.1, mids, entering)
    assert abs(terms.cross_layers.item() - np.mean([masked_mse(*p, mask).item() for p in mids])) < 1e-12
    assert abs(terms.input_layer.item() - masked_mse(*entering, mask).item()) < 1e-12
    expected = 0.5 * terms.ce + 0.5 * terms.kl + 0.3 * (terms.hidden + terms.cross_layers + terms.input_layer)
    assert torch.allclose(terms.total, expected)
    off = distillation_loss(*logits, y, None, last, None, mask, 2.0, 0.5, 0.3, 0.1)
    assert off.cross_layers.item() == 0.0 and off.input_layer.item() == 0.0
    assert torch.allclose(off.total, 0.5 * off.ce + 0.5 * off.kl + 0.3 * off.hidden)


def test_attention_scores_are_the_unnormalised_logits_of_eager_attention():
    """AttentionScores' QK^T/sqrt(d) against a float64 computation, and its softmax against the layer's own probabilities."""
    from transformers import BertConfig
    from transformers.models.bert.modeling_bert import BertLayer

    from dtx.model.decoupled import additive_mask
    from dtx.train.distill import AttentionScores

    torch.manual_seed(0)
    cfg = BertConfig(hidden_size=32, num_attention_heads=4, intermediate_size=64, attn_implementation="eager")
    layer = BertLayer(cfg).eval()
    captured = {}
    layer.attention.self.register_forward_hook(lambda m, a, out: captured.update(probs=out[1]))  # returns None: output kept
    grab = AttentionScores(layer)
    x = torch.randn(2, 7, 32)
    mask = torch.tensor([[1] * 7, [1] * 4 + [0] * 3])
    with torch.no_grad():
        layer(x, additive_mask(mask, x.dtype))
    sa = layer.attention.self
    xd = x.double()
    q = (xd @ sa.query.weight.double().T + sa.query.bias.double()).view(2, 7, 4, 8).transpose(1, 2)
    k = (xd @ sa.key.weight.double().T + sa.key.bias.double()).view(2, 7, 4, 8).transpose(1, 2)
    ref = q @ k.transpose(-1, -2) / 8**0.5
    scores = grab.scores()
    assert scores.shape == (2, 4, 7, 7)
    assert (scores.double() - ref).abs().max() < 1e-5 and (scores.double() - ref).abs().max() / ref.abs().max() < 1e-6
    real = (mask.bool()[:, None, :, None] & mask.bool()[:, None, None, :]).expand(-1, 4, -1, -1)
    assert (grab.probs(mask) - captured["probs"])[real].abs().max() < 1e-6
    grab.remove()
