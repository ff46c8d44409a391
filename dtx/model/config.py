"""The decoupling settings: the small JSON that travels with every checkpoint."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from transformers import PretrainedConfig

from dtx.cost import check_compress, check_split
from dtx.errors import ConfigError
from dtx.model.arch import arch_spec
from dtx.task import TASKS, Task

# Added to attention scores of padding slots. Large enough that exp() underflows to 0 next to
# any real score, small enough to stay finite in float16 (max 65504) even after adding scores.
MASK_VALUE = -10000.0

DEFAULT_QUESTION_LEN = 64  # question window when none is chosen (the served shape's questions are 32 tokens)


@dataclass
class DecoupleConfig:
    split: int  # N: layers in the input component; the cross component gets L - N
    num_layers: int  # L of the source model
    hidden_size: int  # width of the encoder layers
    compress: int = 1  # k: the compressor maps hidden -> hidden / k; 1 = no compressor
    task: str = Task.QA  # "qa" (start/end logits, SQuAD 2.0 no-answer at token 0) or "pair" (labels)
    num_labels: int = 2  # classes of the pair head (unused for qa)
    model_type: str = "bert"  # source architecture, a key of dtx.model.arch.ARCHITECTURES
    max_question_len: int = DEFAULT_QUESTION_LEN  # tokens of the question segment, specials included
    max_passage_len: int = 384  # tokens of one passage window, specials included
    doc_stride: int = 128  # overlap between consecutive windows of a long passage
    cross_embeddings: bool = True  # re-add position/segment embeddings at the split (paper); False = DeFormer

    @property
    def rep_dim(self) -> int:
        """Width of what the input component emits and the store caches."""
        return self.hidden_size // self.compress

    @property
    def cross_layers(self) -> int:
        return self.num_layers - self.split

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "DecoupleConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ConfigError(f"unknown decoupling settings {sorted(unknown)}; this dtx reads {sorted(known)}")
        return cls(**data)

    def validate(self, source: PretrainedConfig) -> None:
        """Check the settings against the source model; every failure is a one-line ConfigError."""
        spec = arch_spec(source)
        if self.model_type != source.model_type:
            raise ConfigError(f"decoupling says model type '{self.model_type}' but the model is '{source.model_type}'")
        if self.num_layers != source.num_hidden_layers or self.hidden_size != source.hidden_size:
            raise ConfigError(
                f"decoupling was made for {self.num_layers} layers x {self.hidden_size} hidden, "
                f"but the model has {source.num_hidden_layers} x {source.hidden_size}"
            )
        check_split(self.split, self.num_layers)
        check_compress(self.compress, self.hidden_size)
        if self.task not in TASKS:
            raise ConfigError(f"task '{self.task}' is not one of {', '.join(TASKS)}")
        limit = source.max_position_embeddings - spec.position_offset(source)
        if self.max_question_len < 3 or self.max_passage_len < 3:
            raise ConfigError("max question and passage lengths must be at least 3 tokens")
        if self.max_question_len + self.max_passage_len > limit:
            raise ConfigError(
                f"max question length {self.max_question_len} + max passage length {self.max_passage_len} "
                f"exceeds the model's {limit} positions; lower --max-passage-len"
            )
        if not 0 <= self.doc_stride < self.max_passage_len - 2:
            raise ConfigError(f"doc stride {self.doc_stride} must be below the passage length {self.max_passage_len} - 2")
