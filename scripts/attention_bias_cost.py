"""What hiding padded keys costs ONNX Runtime's CPU MultiHeadAttention: one node with each kind of mask, and none.

Why: dtx's graphs pass an additive attention bias so that padded slots stay exact, and ONNX Runtime's
CPU kernel leaves its flash path whenever a bias is given. This measures that one cost on the served
shape (K pairs of seq-q + seq-p tokens, BERT-base's 12 heads of 64 by default), the sessions
interleaved so machine noise falls on all, on fresh random inputs. Beside the bias it times the node's
two other exact ways to hide padded keys, a 0/1 key padding mask and per-pair key lengths (which
need the padding last), with `--pad N` keys hidden at the end of every pair (0: masks that hide
nothing, whose outputs must equal the unmasked node's; max-abs differences printed).

    .venv/bin/python scripts/attention_bias_cost.py --threads 1 --runs 10 --json attention-bias.json
    .venv/bin/python scripts/attention_bias_cost.py --threads 1 --runs 10 --pad 12 --json attention-mask-padded.json
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


# no mask (the flash path); a (K, 1, S, S) additive bias (what dtx's graphs pass); a (K, S) 0/1 key padding
# mask; a (K,) key-length mask (valid keys first, padding last)
MASKS = ("none", "bias", "key_padding_mask", "key_lengths")


def attention_node(batch: int, seq: int, heads: int, head_size: int, mask: str) -> bytes:
    """A graph of one com.microsoft MultiHeadAttention over (batch, seq, heads x head_size) q, k, v, with the `mask` input of MASKS."""
    shape = [batch, seq, heads * head_size]
    inputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, shape) for n in "qkv"]
    names = ["q", "k", "v"]
    if mask == "bias":
        inputs.append(helper.make_tensor_value_info("mask", TensorProto.FLOAT, [batch, 1, seq, seq]))
        names += ["", "", "mask"]  # no projection bias, no key padding mask
    elif mask in ("key_padding_mask", "key_lengths"):
        inputs.append(helper.make_tensor_value_info("mask", TensorProto.INT32, [batch, seq] if mask == "key_padding_mask" else [batch]))
        names += ["", "mask"]  # no projection bias
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
    ap.add_argument("--pad", type=int, default=0, help="Keys hidden at the end of every pair (0: masks that hide nothing).")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json")
    args = ap.parse_args()
    seq = args.seq_q + args.seq_p
    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    sessions = {m: ort.InferenceSession(attention_node(args.candidates, seq, args.heads, args.head_size, m), options, providers=["CPUExecutionProvider"]) for m in MASKS}
    rng = np.random.default_rng(args.seed)
    qkv = {n: rng.standard_normal((args.candidates, seq, args.heads * args.head_size), dtype=np.float32) for n in "qkv"}
    valid = np.arange(seq)[None, :].repeat(args.candidates, 0) < seq - args.pad  # (K, S): the last `pad` keys hidden
    feeds = {
        "none": qkv,
        "bias": {**qkv, "mask": np.where(valid, 0.0, -10000.0).astype(np.float32)[:, None, None, :].repeat(seq, 2)},
        "key_padding_mask": {**qkv, "mask": valid.astype(np.int32)},
        "key_lengths": {**qkv, "mask": valid.sum(1).astype(np.int32)},
    }
    outputs = {m: sessions[m].run(None, feeds[m])[0] for m in MASKS}  # also the warm-up
    times: dict[str, list[float]] = {m: [] for m in MASKS}
    for _ in range(args.runs):
        for m in MASKS:
            start = time.perf_counter()
            sessions[m].run(None, feeds[m])
            times[m].append(time.perf_counter() - start)
    latency = {m: Latency(times[m]) for m in MASKS}
    ratios = {m: speedup(latency[m], latency["none"]) for m in MASKS}  # how many times slower the node is with the mask
    reference = "none" if args.pad == 0 else "bias"  # every mask must compute what the bias does (and, hiding nothing, what no mask does)
    diffs = {m: float(np.abs(outputs[m] - outputs[reference]).max()) for m in MASKS if m not in ("none", reference)}
    labels = {"none": "none (flash path)", "bias": "(K, 1, S, S) additive bias", "key_padding_mask": "(K, S) key padding mask", "key_lengths": "(K,) key lengths"}
    emit(
        f"MultiHeadAttention, {args.candidates} x {seq} tokens ({args.pad} padded), {args.heads} x {args.head_size}, {args.threads} thread(s), median of {args.runs} interleaved",
        ["mask input", "p50 ms", "vs none", f"max-abs vs {reference}"],
        [[labels[m], f"{1e3 * latency[m].p50:.1f}", f"{ratios[m]:.2f}x", f"{diffs[m]:.1e}" if m in diffs else "-"] for m in MASKS],
    )
    save_json(args.json, {
        "args": vars(args), "p50_ms": {m: 1e3 * latency[m].p50 for m in MASKS}, "ratio": ratios["bias"], "ratios": ratios,
        "max_abs_diffs": diffs, "reference": reference, "times_s": {m: latency[m].seconds for m in MASKS}, "machine": machine_info(),
    })  # fmt: skip

if __name__ == "__main__":
    main()
