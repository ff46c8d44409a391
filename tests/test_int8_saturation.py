"""Which CPUs' integer kernels saturate on 8-bit weights, checked on this one, and what dtx builds there.

ONNX Runtime's u8s8 GEMM on AVX2 / AVX-512BW (vpmaddubsw) adds each pair of uint8 x int8 products in a
saturating 16-bit lane; VNNI and AMX accumulate in 32 bits. dtx.model.int8.PAIR_SATURATING_ISAS names the first
kind: the default INT8 scheme there uses 7-bit weights, and an engine with 8-bit ones gets a one-line warning.
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from dtx.engines.cpu import INT8_ISAS, int8_isa
from dtx.model.int8 import DEFAULT_SCHEME, PAIR_SATURATING_ISAS, SCHEMES, default_scheme, saturation_warning


def _matmul_integer(w: np.ndarray) -> ort.InferenceSession:
    """One MatMulInteger node, uint8 activations against the constant int8 weights `w`, zero points 0."""
    inits = [numpy_helper.from_array(w, "w"), numpy_helper.from_array(np.array(0, np.uint8), "az"), numpy_helper.from_array(np.array(0, np.int8), "wz")]
    graph = helper.make_graph([helper.make_node("MatMulInteger", ["a", "w", "az", "wz"], ["y"])], "mmi",
                              [helper.make_tensor_value_info("a", TensorProto.UINT8, [None, w.shape[0]])],
                              [helper.make_tensor_value_info("y", TensorProto.INT32, [None, w.shape[1]])], inits)  # fmt: skip
    return ort.InferenceSession(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]).SerializeToString(), providers=["CPUExecutionProvider"])


@pytest.mark.skipif(int8_isa() in ("unknown", "baseline"), reason="no x86 integer ISA read from /proc/cpuinfo on this machine")
def test_this_cpus_kernel_saturates_exactly_where_the_table_says():
    """Large activations against 8-bit weights of one sign per column: exact on VNNI/AMX, clipped per 16-bit pair
    sum on the others; 7-bit weights (reduce_range) exact on every CPU. Random rows beside them keep it honest."""
    rng = np.random.default_rng(rng_seed := 7)
    k = 64
    w8 = np.where(np.arange(8) % 2 == 0, 127, -128)[None, :].repeat(k, 0).astype(np.int8)
    w7 = (w8 // 2).astype(np.int8)  # within [-64, 63]: what reduce_range builds
    a = np.vstack([np.full((2, k), 255, np.uint8), rng.integers(200, 256, (6, k), dtype=np.uint8)])
    exact8, exact7 = a.astype(np.int64) @ w8.astype(np.int64), a.astype(np.int64) @ w7.astype(np.int64)
    got8, got7 = _matmul_integer(w8).run(None, {"a": a})[0], _matmul_integer(w7).run(None, {"a": a})[0]
    assert np.array_equal(got7, exact7), f"7-bit weights are not exact on {int8_isa()} (seed {rng_seed})"
    if int8_isa() in PAIR_SATURATING_ISAS:
        assert np.all(np.abs(got8) <= 32768 * k // 2) and not np.array_equal(got8, exact8), f"{int8_isa()} is listed as saturating but computed exactly"
    else:
        assert np.array_equal(got8, exact8), f"{int8_isa()} saturates: add it to PAIR_SATURATING_ISAS"


def test_default_scheme_per_isa_and_the_warning():
    for _, isa in INT8_ISAS:
        scheme = default_scheme(isa)
        assert scheme.reduce_range == (isa in PAIR_SATURATING_ISAS)
        assert (scheme.per_channel, scheme.activations) == (DEFAULT_SCHEME.per_channel, DEFAULT_SCHEME.activations)
        assert saturation_warning(scheme, isa, "engine e") is None  # the default never warns on its own CPU
    line = saturation_warning(SCHEMES["per-tensor-uint8"], "avx2", "engine e")
    assert line is not None and "\n" not in line and "--int8-scheme per-tensor-uint8-reduce-range" in line and "avx2" in line
    assert saturation_warning(SCHEMES["per-channel-uint8"], "avx512-vnni", "engine e") is None


@pytest.mark.parametrize("scheme", ["per-channel-uint8", "per-channel-uint8-reduce-range"])
def test_an_engine_with_8_bit_weights_warns_in_one_line_on_a_saturating_cpu(engine, monkeypatch, capsys, scheme):
    """Loaded where the kernel saturates (the CPU's ISA read as avx2), an 8-bit-weight engine says so in one line naming
    the scheme to rebuild with, and still runs; a 7-bit one says nothing. On a VNNI CPU neither says anything."""
    import dtx.engines.cpu as cpu
    from dtx.engines import open_engine

    _, engine_dir = engine("bert", "int8", int8_scheme=scheme)
    for isa, warns in (("avx2", not scheme.endswith("reduce-range")), ("avx512-vnni", False)):
        monkeypatch.setattr(cpu, "int8_isa", lambda isa=isa: isa)
        capsys.readouterr()
        with open_engine(engine_dir) as e:
            assert e.runner is not None
        err = capsys.readouterr().err.strip()
        assert (err != "") == warns, (isa, err)
        if warns:
            assert "\n" not in err and f"--int8-scheme {scheme}-reduce-range" in err and str(engine_dir) in err
