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

from dataclasses import dataclass

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


# what `dtx build-engine --int8` builds unless a checkpoint trained for another scheme or --int8-scheme says otherwise
DEFAULT_SCHEME = Int8Scheme()
SCHEMES = {s.name: s for s in (Int8Scheme(pc, a, rr) for pc in (True, False) for a in ACTIVATIONS for rr in (False, True))}
