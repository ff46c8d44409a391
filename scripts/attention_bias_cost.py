"""What the attention bias costs ONNX Runtime's CPU MultiHeadAttention: one node with and without it.

Why: dtx's graphs pass an additive attention bias so that padded slots stay exact, and ONNX Runtime's
CPU kernel leaves its flash path whenever a bias is given. This measures that one cost on the served
shape (K pairs of seq-q + seq-p tokens, BERT-base's 12 heads of 64 by default), the two sessions
interleaved so machine noise falls on both, on fresh random inputs; it also checks that a zero bias
gives the same output (max-abs difference printed).

    .venv/bin/python scripts/attention_bias_cost.py --threads 1 --runs 10 --json attention-bias.json
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper

from dtx.bench.machine import machine_info
from dtx.bench.stats import Latency, speedup
from dtx.report import emit, save_json


def attention_node(batch: int, seq: int, heads: int, head_size: int, bias: bool) -> bytes:
    """A graph of one com.microsoft MultiHeadAttention over (batch, seq, heads x head_size) q, k, v; with `bias`, a (batch, 1, seq, seq) attention bias."""
    shape = [batch, seq, heads * head_size]
    inputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, shape) for n in "qkv"]
    names = ["q", "k", "v"]
    if bias:
        inputs.append(helper.make_tensor_value_info("bias", TensorProto.FLOAT, [batch, 1, seq, seq]))
        names += ["", "", "bias"]  # no projection bias, no key padding mask
    node = helper.make_node("MultiHeadAttention", names, ["out"], domain="com.microsoft", num_heads=heads)
    graph = helper.make_graph([node], "attention", inputs, [helper.make_tensor_value_info("out", TensorProto.FLOAT, shape)])
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)]
    return helper.make_model(graph, opset_imports=opsets).SerializeToString()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-K", "--candidates", type=int, default=20)
    ap.add_argument("--seq-q", type=int, default=32)
    ap.add_argument("--seq-p", type=int, default=150)
    ap.add_argument("--heads", type=int, default=12)
    ap.add_argument("--head-size", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json")
    args = ap.parse_args()
    seq = args.seq_q + args.seq_p
    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    sessions = {b: ort.InferenceSession(attention_node(args.candidates, seq, args.heads, args.head_size, b), options, providers=["CPUExecutionProvider"]) for b in (False, True)}
    rng = np.random.default_rng(args.seed)
    feeds = {n: rng.standard_normal((args.candidates, seq, args.heads * args.head_size), dtype=np.float32) for n in "qkv"}
    with_bias = {**feeds, "bias": np.zeros((args.candidates, 1, seq, seq), np.float32)}
    outputs = {b: sessions[b].run(None, with_bias if b else feeds)[0] for b in (False, True)}  # also the warm-up
    times: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(args.runs):
        for b in (False, True):
            start = time.perf_counter()
            sessions[b].run(None, with_bias if b else feeds)
            times[b].append(time.perf_counter() - start)
    none, bias = Latency(times[False]), Latency(times[True])
    ratio = speedup(bias, none)  # how many times slower the node is with the bias
    diff = float(np.abs(outputs[True] - outputs[False]).max())
    emit(
        f"MultiHeadAttention, {args.candidates} x {seq} tokens, {args.heads} x {args.head_size}, {args.threads} thread(s), median of {args.runs} interleaved",
        ["attention bias", "p50 ms", "vs none"],
        [["none (flash path)", f"{1e3 * none.p50:.1f}", "1.00x"], ["(K, 1, S, S) zeros", f"{1e3 * bias.p50:.1f}", f"{ratio:.2f}x"]],
    )
    print(f"max-abs output difference with a zero bias: {diff:.2e}")
    save_json(args.json, {"args": vars(args), "p50_ms": {"none": 1e3 * none.p50, "bias": 1e3 * bias.p50}, "ratio": ratio, "max_abs_diff": diff, "times_s": {"none": none.seconds, "bias": bias.seconds}, "machine": machine_info()})


if __name__ == "__main__":
    main()
