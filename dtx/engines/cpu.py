"""Which CPU an engine was built and timed on, and which integer instructions its INT8 kernels can use.

An INT8 speed-up is a property of the CPU as much as of the model: ONNX Runtime's MLAS picks its
u8s8 GEMM by ISA - AMX tiles, then AVX-512 VNNI (vpdpbusd), AVX-VNNI, AVX-512BW, AVX2
(vpmaddubsw, whose 16-bit pair sums can saturate: what reduce_range guards against). The same
bench measured dynamic INT8 2.84x over FP32 on an AMX Xeon and 1.64x on an AVX2-only EPYC, so
every engine.json and bench record names the CPU and the best integer ISA it has.
"""

from __future__ import annotations

import platform
from functools import lru_cache
from pathlib import Path

# (flag in /proc/cpuinfo, what MLAS's integer GEMM runs on it), best first
INT8_ISAS = (("amx_int8", "amx"), ("avx512_vnni", "avx512-vnni"), ("avx_vnni", "avx-vnni"), ("avx512bw", "avx512bw"), ("avx2", "avx2"), ("sse4_1", "sse4.1"))
VECTOR_ISAS = ("avx512f", "avx2", "sse4_2")


@lru_cache(maxsize=1)
def _cpuinfo() -> tuple[str, frozenset[str]]:
    """(model name, flags) of the first CPU in /proc/cpuinfo; ("", {}) where there is none (not Linux)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "", frozenset()
    fields = dict(line.split(":", 1) for line in text.split("\n\n", 1)[0].splitlines() if ":" in line)
    fields = {k.strip(): v.strip() for k, v in fields.items()}
    return fields.get("model name", ""), frozenset(fields.get("flags", "").split())


def cpu_flags() -> frozenset[str]:
    return _cpuinfo()[1]


def vector_isa() -> str:
    """The widest x86 vector ISA this CPU has (what Inductor's generated C++ is vectorised for)."""
    flags = cpu_flags()
    if not flags:
        return "unknown"
    return next((isa for isa in VECTOR_ISAS if isa in flags), "baseline")


def int8_isa() -> str:
    """The best integer-dot-product ISA this CPU has, as MLAS ranks them; "unknown" without /proc/cpuinfo."""
    flags = cpu_flags()
    if not flags:
        return "unknown"
    return next((name for flag, name in INT8_ISAS if flag in flags), "baseline")


def cpu_info() -> dict:
    """The CPU's model name (platform.processor() where /proc/cpuinfo has none) and its integer ISA."""
    model = _cpuinfo()[0] or platform.processor() or platform.machine()
    return {"model": model, "int8_isa": int8_isa()}
