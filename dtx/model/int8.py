"""How dynamic INT8 computes a MatMul: the one description the ORT engine builds from and QAT trains with.

ONNX Runtime's dynamic INT8 (docs/engines.md, "INT8") quantizes each weight once, at build, to int8
symmetric (per output channel or per tensor; `reduce_range` uses 7 bits, [-64, 64], against the
16-bit overflow of u8s8 kernels without VNNI) and each activation at run time, per tensor: uint8
asymmetric (DynamicQuantizeLinear: scale (max(x,0) - min(x,0)) / 255, a rounded zero point) or
int8 symmetric (scale max|x| / 127.5, zero point 0). A scheme is named so the name can travel in a
checkpoint, an export manifest, engine.json and a CLI flag. Kept free of torch and ONNX: every
layer that carries a scheme imports it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from dtx.errors import ConfigError

ACTIVATIONS = ("uint8", "int8")


@dataclass(frozen=True)
class Int8Scheme:
    per_channel: bool = True  # weight scales per output channel (else one per tensor)
    activations: str = "uint8"  # uint8 asymmetric (ORT's quantize_dynamic) | int8 symmetric
    reduce_range: bool = False  # 7-bit weights

    @property
    def name(self) -> str:
        return f"{'per-channel' if self.per_channel else 'per-tensor'}-{self.activations}{'-reduce-range' if self.reduce_range else ''}"

    def to_dict(self) -> dict:
        return {"name": self.name, "weights": "int8 symmetric", "per_channel": self.per_channel, "activations": self.activations, "reduce_range": self.reduce_range}

    @classmethod
    def parse(cls, name: str) -> "Int8Scheme":
        """The scheme of a name (as `name` writes it), or a one-line error listing the names."""
        if name not in SCHEMES:
            raise ConfigError(f"unknown INT8 scheme {name!r}; the schemes are {', '.join(SCHEMES)}")
        return SCHEMES[name]


# what `dtx build-engine --int8` builds, unless a checkpoint trained for another scheme or --int8-scheme says otherwise,
# on a CPU whose integer kernel is exact (default_scheme: per CPU)
DEFAULT_SCHEME = Int8Scheme()
SCHEMES = {s.name: s for s in (Int8Scheme(pc, a, rr) for pc in (True, False) for a in ACTIVATIONS for rr in (False, True))}
# integer ISAs (dtx.engines.cpu.INT8_ISAS) whose u8s8 GEMM kernel is vpmaddubsw: it adds each pair of uint8 x int8
# products in a saturating 16-bit lane, so 8-bit weights can overflow it (255 x 127 x 2 > 32767); 7-bit ones cannot
PAIR_SATURATING_ISAS = ("avx2", "avx512bw", "sse4.1")


def default_scheme(int8_isa: str) -> Int8Scheme:
    """The default scheme for a CPU with this integer ISA: DEFAULT_SCHEME, with 7-bit weights where 8-bit ones can
    saturate the CPU's u8s8 kernel (measured on an AVX2-only EPYC: docs/training.md, "INT8 on AVX2-only CPUs")."""
    return replace(DEFAULT_SCHEME, reduce_range=True) if int8_isa in PAIR_SATURATING_ISAS else DEFAULT_SCHEME


def saturation_warning(scheme: Int8Scheme, int8_isa: str, what: str) -> str | None:
    """One line when `what` (an engine, a checkpoint) uses 8-bit weights on a CPU whose u8s8 kernel can saturate on them."""
    if scheme.reduce_range or int8_isa not in PAIR_SATURATING_ISAS:
        return None
    safe = replace(scheme, reduce_range=True).name
    return (f"warning: {what} uses INT8 scheme {scheme.name}, whose 8-bit weights can saturate this CPU's {int8_isa} integer kernel "
            f"(16-bit pair sums); build it with --int8-scheme {safe} for this CPU")
