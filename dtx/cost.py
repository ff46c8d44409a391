"""The cost model (docs/design.md, "Cost model"): what one query and one cached passage cost.

Two measures, both reported by `info`, `bench` and `plan`:
- token-layers (the design's unit c): coupled K*(lq+lp)*L vs decoupled lq*N + K*(lq+lp)*M;
- FLOPs (2 per multiply-add) of the same work, counting the attention terms that grow with the
  sequence and the compressor/decompressor, so achieved GFLOP/s can be compared across paths.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from dtx.errors import ConfigError

BYTES_PER_VALUE = {"fp32": 4, "fp16": 2, "int8": 1}
SCALE_BYTES = 4  # one float32 scale per token vector in an int8 store


@dataclass(frozen=True)
class EncoderShape:
    layers: int  # L
    hidden: int  # d
    intermediate: int  # feed-forward width f
    rep_dim: int | None = None  # what the input component emits (hidden / k); None = hidden

    @property
    def rep(self) -> int:
        return self.rep_dim or self.hidden


def layer_flops(tokens: int, seq: int, hidden: int, intermediate: int) -> int:
    """FLOPs of one encoder layer for `tokens` tokens attending over sequences of `seq` tokens.

    Per token: Q, K, V and output projections 4*d*d MACs, feed-forward 2*d*f, attention scores
    and weighted sum 2*seq*d; times 2 FLOPs per MAC.
    """
    return 2 * tokens * (4 * hidden * hidden + 2 * hidden * intermediate + 2 * seq * hidden)


@dataclass(frozen=True)
class QueryCost:
    coupled_token_layers: int
    decoupled_token_layers: int
    coupled_flops: int
    decoupled_flops: int
    passage_index_flops: int  # offline: one passage through the input component (+ compressor)
    cache_bytes_per_passage: int

    @property
    def token_layer_ratio(self) -> float:
        return self.coupled_token_layers / self.decoupled_token_layers

    @property
    def flop_ratio(self) -> float:
        return self.coupled_flops / self.decoupled_flops

    def to_dict(self) -> dict:
        return {**asdict(self), "token_layer_ratio": self.token_layer_ratio, "flop_ratio": self.flop_ratio}

    HEADERS = ("measure", "coupled", "decoupled", "ratio")

    def rows(self, dtype: str | None = None) -> list[list]:
        """The cost table (`dtx info`, `dtx plan`): per-query compute; with `dtype`, also the offline cost per passage."""
        rows = [
            ["token-layers", self.coupled_token_layers, self.decoupled_token_layers, f"{self.token_layer_ratio:.2f}x"],
            ["GFLOP", self.coupled_flops / 1e9, self.decoupled_flops / 1e9, f"{self.flop_ratio:.2f}x"],
        ]
        if dtype is not None:
            rows += [["index GFLOP / passage", "-", self.passage_index_flops / 1e9, "offline"], [f"cache bytes / passage ({dtype})", "-", self.cache_bytes_per_passage, "offline"]]
        return rows


@dataclass(frozen=True)
class StoragePlan:
    passages: int
    value_bytes: int  # the representations themselves
    scale_bytes: int  # int8 only: one float32 scale per token vector

    @property
    def total_bytes(self) -> int:
        return self.value_bytes + self.scale_bytes


def storage_plan(passages: int, seq_p: int, rep_dim: int, dtype: str) -> StoragePlan:
    """Bytes to cache `passages` passages of `seq_p` tokens at `rep_dim` values each."""
    values = passages * seq_p * rep_dim * BYTES_PER_VALUE[dtype]
    scales = passages * seq_p * SCALE_BYTES if dtype == "int8" else 0
    return StoragePlan(passages, values, scales)


def cache_bytes(seq_p: int, rep_dim: int, dtype: str) -> int:
    """Bytes to cache one passage's representation (int8 adds a float32 scale per token)."""
    return storage_plan(1, seq_p, rep_dim, dtype).total_bytes


def query_cost(shape: EncoderShape, split: int, seq_q: int, seq_p: int, candidates: int, dtype: str = "fp16") -> QueryCost:
    """Cost of one question against `candidates` cached passages, coupled vs decoupled at `split`."""
    L, N, K, d, f = shape.layers, split, candidates, shape.hidden, shape.intermediate
    M, pair = L - N, seq_q + seq_p
    compressed = shape.rep != d
    codec = (lambda tokens: 2 * tokens * d * shape.rep) if compressed else (lambda tokens: 0)
    coupled = K * layer_flops(pair, pair, d, f) * L
    decoupled = (
        layer_flops(seq_q, seq_q, d, f) * N + codec(seq_q)  # the question once, input component
        + codec(seq_q) + codec(K * seq_p)  # decompress the question once (its rows are gathered per candidate) and the passages
        + K * layer_flops(pair, pair, d, f) * M
    )
    return QueryCost(
        coupled_token_layers=K * pair * L,
        decoupled_token_layers=seq_q * N + K * pair * M,
        coupled_flops=coupled,
        decoupled_flops=decoupled,
        passage_index_flops=layer_flops(seq_p, seq_p, d, f) * N + codec(seq_p),
        cache_bytes_per_passage=cache_bytes(seq_p, shape.rep, dtype),
    )


def check_split(split: int, layers: int, option: str = "--split") -> None:
    """The split rule, said once: N input-component layers of the model's L, 0 <= N <= L."""
    if not 0 <= split <= layers:
        raise ConfigError(f"split {split} is outside 0..{layers} for this {layers}-layer model; choose {option} between 0 and {layers}")


def check_compress(compress: int, hidden: int) -> None:
    """The compression rule, said once: the ratio k divides the hidden size (rep_dim = hidden / k)."""
    if compress < 1 or hidden % compress:
        raise ConfigError(f"compression ratio {compress} does not divide the hidden size {hidden}; choose one of {[k for k in range(1, hidden + 1) if hidden % k == 0][:12]}...")
