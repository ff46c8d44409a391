"""The cost model against hand counts (DESIGN.md section 5)."""

from dataclasses import replace

import numpy as np

from dtx.cost import EncoderShape, cache_bytes, layer_flops, query_cost


def test_token_layers_hand_count():
    c = query_cost(EncoderShape(12, 768, 3072), split=5, seq_q=32, seq_p=150, candidates=20)
    assert c.coupled_token_layers == 20 * 182 * 12 == 43680
    assert c.decoupled_token_layers == 32 * 5 + 20 * 182 * 7 == 25640
    assert abs(c.token_layer_ratio - 1.7036) < 1e-3


def test_layer_flops_hand_count():
    # one token, seq 1, d=2, f=4: projections 4*2*2=16 MACs, ffn 2*2*4=16, attention 2*1*2=4 -> 36 MACs
    assert layer_flops(1, 1, 2, 4) == 72


def test_compressed_flops_include_codec():
    plain = query_cost(EncoderShape(2, 8, 16), 1, 3, 5, 2)
    packed = query_cost(EncoderShape(2, 8, 16, rep_dim=4), 1, 3, 5, 2)
    # compress the 3-token question, decompress it once and the 2 passages of 5 tokens
    assert packed.decoupled_flops - plain.decoupled_flops == 2 * 3 * 8 * 4 + 2 * (3 + 2 * 5) * 8 * 4
    assert packed.passage_index_flops - plain.passage_index_flops == 2 * 5 * 8 * 4


def test_paper_storage_example():
    n = 32_000_000
    assert n * cache_bytes(150, 768, "fp16") == 7_372_800_000_000
    assert n * cache_bytes(150, 192, "fp16") == 1_843_200_000_000
    assert n * 150 * 192 == 921_600_000_000  # int8 values; scales come on top
    assert cache_bytes(150, 192, "int8") == 150 * (192 + 4)


def test_plan_reproduces_the_seed_example():
    from click.testing import CliRunner

    from dtx.cli import main

    def plan(*args):
        result = CliRunner().invoke(main, ["plan", "--passages", "32000000", "--seq-p", "150", "--hidden", "768", *args])
        assert result.exit_code == 0, result.output
        return result.output

    assert "7.373e+12 B" in plan("--dtype", "fp16")
    assert "1.843e+12 B" in plan("-k", "4", "--dtype", "fp16")
    out = plan("-k", "4", "--dtype", "int8", "--index-rate", "100")
    assert "9.216e+11 B" in out and "1.920e+10 B" in out and "9.408e+11 B" in out
    assert "3.200e+05 s" in out
    assert "1.70x" in plan("--layers", "12", "--split", "5")
    bad = CliRunner().invoke(main, ["plan", "--passages", "10", "--hidden", "768", "-k", "5"])
    assert bad.exit_code == 1 and "does not divide" in bad.output


def test_codec_cost_matches_what_the_model_runs(model_dir, tmp_path):
    """The codec FLOPs of query_cost equal the compressor/decompressor matmuls one query really runs:
    the question compressed and decompressed once (its rows gathered per candidate), K passages decompressed."""
    import torch

    from dtx.model.decouple import decouple
    from dtx.model.samples import random_pairs

    ckpt = decouple(model_dir("bert", "qa"), tmp_path / "ckpt", split=1, compress=2)
    model, cfg = ckpt.model.eval(), ckpt.config
    tokens = {"compressor": 0, "decompressor": 0}
    hooks = [getattr(part, name).register_forward_hook(lambda m, args, out, name=name: tokens.__setitem__(name, tokens[name] + args[0].shape[:-1].numel()))
             for part, name in ((model.input, "compressor"), (model.cross, "decompressor"))]
    lq, lp, k = 9, 21, 5
    batch = random_pairs(ckpt.segmenter(), np.random.default_rng(0), k, lq, lp, bq=1)
    q, p = (tuple(torch.from_numpy(a) for a in (s.input_ids, s.attention_mask, s.token_type_ids)) for s in (batch.question, batch.passage))
    with torch.no_grad():
        q_rep = model.input(*q)  # query time: the question only; passages come from the cache
        p_rep = model.input(*p)
        tokens["compressor"] -= k * lp  # ...so their compression is indexing work, not the query's
        model.cross(q_rep, q[1], p_rep, p[1])
    for h in hooks:
        h.remove()
    d, r = cfg.hidden_size, cfg.rep_dim
    shape = EncoderShape(cfg.num_layers, d, 4 * d)  # the feed-forward width cancels out of the codec difference
    codec = query_cost(replace(shape, rep_dim=r), 1, lq, lp, k).decoupled_flops - query_cost(shape, 1, lq, lp, k).decoupled_flops
    assert tokens == {"compressor": lq, "decompressor": lq + k * lp}
    assert codec == 2 * d * r * (tokens["compressor"] + tokens["decompressor"])
