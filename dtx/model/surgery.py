"""Model surgery: cut a fine-tuned `transformers` cross-encoder into a decoupled model.

Nothing is retrained here. Every module of the decoupled model is a deep copy of the source's,
so the teacher stays untouched for distillation, and the new parts start where the paper starts
them: pos_x/type_x as copies of the position/segment tables, the compressor/decompressor as a
random orthogonal projection and its transpose (the best a linear pair can do without data;
distillation can replace it with the principal components of real layer-N states).
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch
from safetensors import SafetensorError
from torch import nn
from transformers import (
    AutoConfig,
    AutoModelForQuestionAnswering,
    AutoModelForSequenceClassification,
    PretrainedConfig,
    PreTrainedModel,
)

from dtx.errors import CheckpointError, ConfigError, first_line
from dtx.model.arch import arch_spec
from dtx.model.config import DecoupleConfig
from dtx.model.decoupled import CoupledModel, CrossComponent, DecoupledModel, InputComponent, PairHead, QAHead
from dtx.task import Task

AUTO_CLASSES = {Task.QA: AutoModelForQuestionAnswering, Task.PAIR: AutoModelForSequenceClassification}
HEAD_SUFFIX = {Task.QA: "ForQuestionAnswering", Task.PAIR: "ForSequenceClassification"}
DEFAULT_DOC_STRIDE = 128  # tokens shared by consecutive passage windows, where the window is long enough


def task_of(config: PretrainedConfig) -> str | None:
    """The task a fine-tuned model's head does, from `config.architectures`; None for a bare encoder."""
    for arch in config.architectures or []:
        for task, suffix in HEAD_SUFFIX.items():
            if arch.endswith(suffix):
                return task
    return None


def model_task(model: PreTrainedModel) -> str:
    """The task of a loaded task model, from its head module."""
    return Task.QA if hasattr(model, "qa_outputs") else Task.PAIR


def read_source_config(model_dir: str | Path) -> PretrainedConfig:
    model_dir = Path(model_dir)
    if not (model_dir / "config.json").is_file():
        raise CheckpointError(f"{model_dir} is not a Hugging Face model directory (no config.json); pass a local model path")
    try:
        config = AutoConfig.from_pretrained(model_dir)
    except Exception as e:  # not JSON, no or unknown model_type, a field of the wrong type (each library version raises its own)
        first = first_line(e)
        raise CheckpointError(f"{model_dir / 'config.json'} is not a usable Hugging Face config ({first}); restore it from the model's source") from None
    arch_spec(config)
    return config


def load_source(model_dir: str | Path, task: str | None = None, num_labels: int | None = None) -> PreTrainedModel:
    """Load a local fine-tuned model (or a bare encoder plus a fresh head for `task`) in eager attention.

    Eager attention is what export traces and what distillation reads attention maps from.
    """
    config = read_source_config(model_dir)
    found = task_of(config)
    if found and task and found != task:
        raise ConfigError(f"{model_dir} is a fine-tuned '{found}' model but --task {task} was given; drop --task or pass --task {found}")
    task = found or task
    if task is None:
        raise ConfigError(f"{model_dir} is a bare encoder with no task head; pass --task qa or --task pair to add a fresh head")
    kwargs = {"num_labels": num_labels} if (num_labels and task == Task.PAIR and not found) else {}
    try:
        model = AUTO_CLASSES[task].from_pretrained(model_dir, attn_implementation="eager", **kwargs)
    except (OSError, ValueError, RuntimeError, SafetensorError) as e:  # truncated / corrupt weight files, a foreign format
        first = first_line(e)
        raise ConfigError(f"cannot load the weights in {model_dir} ({first}); restore the model files or point at an intact model directory") from None
    return model.eval()


def _orthogonal_pair(hidden: int, rep_dim: int) -> tuple[nn.Linear, nn.Linear]:
    q, _ = torch.linalg.qr(torch.randn(hidden, rep_dim))  # (hidden, rep_dim), orthonormal columns
    compressor, decompressor = nn.Linear(hidden, rep_dim), nn.Linear(rep_dim, hidden)
    with torch.no_grad():
        compressor.weight.copy_(q.T)
        decompressor.weight.copy_(q)
        compressor.bias.zero_()
        decompressor.bias.zero_()
    return compressor, decompressor


def _cross_tables(embeddings: nn.Module, project: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """Copies of the position and segment tables, mapped to the hidden size.

    ELECTRA-small embeds in 128 dims and projects to 256 after the embedding LayerNorm; its tables
    are carried into the hidden space by the projection's weight (no bias: it would be added twice).
    """
    pos = embeddings.position_embeddings.weight.detach().clone()  # (max_pos, emb)
    typ = embeddings.token_type_embeddings.weight.detach().clone()  # (types, emb)
    if isinstance(project, nn.Linear):
        pos, typ = pos @ project.weight.detach().T, typ @ project.weight.detach().T  # (., hidden)
    return pos, typ


def _head(teacher: PreTrainedModel, task: str, clone) -> nn.Module:
    """The source model's task head (cloned with `clone`), as a module over the final hidden states."""
    spec = arch_spec(teacher.config)
    if task == Task.QA:
        return QAHead(clone(teacher.qa_outputs))
    pooler = clone(getattr(teacher, spec.base_attr).pooler) if spec.pooled_classifier else None
    dropout = getattr(teacher.config, "classifier_dropout", None) or teacher.config.hidden_dropout_prob
    return PairHead(clone(teacher.classifier), pooler, dropout)


def build_coupled(teacher: PreTrainedModel) -> CoupledModel:
    """The teacher as dtx computes it (shares the teacher's modules; for export and inference)."""
    spec = arch_spec(teacher.config)
    base = getattr(teacher, spec.base_attr)
    project = base.embeddings_project if hasattr(base, "embeddings_project") else nn.Identity()
    encoder = InputComponent(base.embeddings, project, base.encoder.layer, nn.Identity(), spec.position_offset(teacher.config))
    return CoupledModel(encoder, _head(teacher, model_task(teacher), lambda m: m)).eval()


def build_decoupled(teacher: PreTrainedModel, cfg: DecoupleConfig) -> DecoupledModel:
    """Split `teacher` at `cfg.split` into an input and a cross component (deep copies)."""
    cfg.validate(teacher.config)
    spec = arch_spec(teacher.config)
    base = getattr(teacher, spec.base_attr)
    offset = spec.position_offset(teacher.config)
    layers = base.encoder.layer
    project = copy.deepcopy(base.embeddings_project) if hasattr(base, "embeddings_project") else nn.Identity()

    if cfg.compress > 1:
        compressor, decompressor = _orthogonal_pair(cfg.hidden_size, cfg.rep_dim)
    else:
        compressor, decompressor = nn.Identity(), nn.Identity()

    pos_x = type_x = None
    if cfg.cross_embeddings:
        pos, typ = _cross_tables(base.embeddings, project)
        pos_x = nn.Embedding.from_pretrained(pos, freeze=False)
        if spec.uses_token_types:
            type_x = nn.Embedding.from_pretrained(typ, freeze=False)

    head = _head(teacher, cfg.task, copy.deepcopy)
    input_component = InputComponent(
        copy.deepcopy(base.embeddings), project, copy.deepcopy(layers[: cfg.split]), compressor, offset
    )
    cross_component = CrossComponent(decompressor, pos_x, type_x, copy.deepcopy(layers[cfg.split :]), head, offset)
    return DecoupledModel(input_component, cross_component, cfg).eval()


def decouple_config_for(
    teacher_config: PretrainedConfig,
    split: int,
    compress: int = 1,
    task: str = Task.QA,
    max_question_len: int = 64,
    max_passage_len: int | None = None,
    doc_stride: int | None = None,
    cross_embeddings: bool = True,
) -> DecoupleConfig:
    """Settings for `teacher_config`, with the passage window defaulting to all remaining positions.

    `doc_stride` None: 128 tokens, or less where windows are short; a given stride that does not fit
    a window is an error, not silently shortened.
    """
    if max_passage_len is None:
        limit = teacher_config.max_position_embeddings - arch_spec(teacher_config).position_offset(teacher_config)
        max_passage_len = limit - max_question_len
    if doc_stride is None:
        doc_stride = min(DEFAULT_DOC_STRIDE, max(0, max_passage_len // 2 - 2))
    elif doc_stride > max_passage_len - 3:
        raise ConfigError(f"--doc-stride {doc_stride} does not fit a passage window of {max_passage_len} tokens; pass at most {max(0, max_passage_len - 3)}")
    cfg = DecoupleConfig(
        split=split,
        num_layers=teacher_config.num_hidden_layers,
        hidden_size=teacher_config.hidden_size,
        compress=compress,
        task=task,
        num_labels=teacher_config.num_labels,
        model_type=teacher_config.model_type,
        max_question_len=max_question_len,
        max_passage_len=max_passage_len,
        doc_stride=doc_stride,
        cross_embeddings=cross_embeddings,
    )
    cfg.validate(teacher_config)
    return cfg
