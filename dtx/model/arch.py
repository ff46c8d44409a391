"""Where each supported architecture keeps the parts that decoupling moves around.

The decoupled model reuses the `transformers` modules (embeddings, layers, heads) of the source
model; this table says, per `config.model_type`, where to find them and how the architecture
numbers positions and segments. One row per architecture; adding one means adding a row and a
tiny model to the test registry (tests fail for an architecture without one).
"""

from __future__ import annotations

from dataclasses import dataclass

from transformers import PretrainedConfig

from dtx.errors import ConfigError


@dataclass(frozen=True)
class ArchSpec:
    model_type: str
    base_attr: str  # attribute of the task model that holds the bare encoder (model.bert, ...)
    positions_after_padding_idx: bool  # RoBERTa numbers positions from padding_idx + 1, BERT from 0
    uses_token_types: bool  # False: one type row, always 0 (RoBERTa); no type_x in the cross part
    pooled_classifier: bool  # BERT: classifier(pooler(h)); ELECTRA/RoBERTa: classifier(h) on token 0

    def position_offset(self, config: PretrainedConfig) -> int:
        """First position id of a sequence, as the source model numbers it."""
        return config.pad_token_id + 1 if self.positions_after_padding_idx else 0


ARCHITECTURES: dict[str, ArchSpec] = {
    "bert": ArchSpec("bert", "bert", False, True, True),
    "electra": ArchSpec("electra", "electra", False, True, False),
    "roberta": ArchSpec("roberta", "roberta", True, False, False),
}


def arch_spec(config: PretrainedConfig) -> ArchSpec:
    """The spec of a config's architecture, or a one-line error naming the supported ones."""
    spec = ARCHITECTURES.get(config.model_type)
    if spec is None:
        raise ConfigError(
            f"model type '{config.model_type}' is not supported; supported are: {', '.join(sorted(ARCHITECTURES))}"
        )
    return spec
