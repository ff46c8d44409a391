"""`dtx info`: what a checkpoint is, how big each part is, and what one query costs."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from dtx.cost import EncoderShape, QueryCost, query_cost
from dtx.model.checkpoint import TEACHER_DIR, Checkpoint
from dtx.model.surgery import read_source_config
from dtx.task import Task


def count(module: nn.Module | None) -> int:
    return 0 if module is None else sum(p.numel() for p in module.parameters())


@dataclass
class CheckpointInfo:
    summary: dict
    parameters: dict[str, int]
    cost: QueryCost
    query: dict

    def to_dict(self) -> dict:
        return {"summary": self.summary, "parameters": self.parameters, "cost": self.cost.to_dict(), "query": self.query}


def describe(ckpt: Checkpoint, seq_q: int = 32, seq_p: int = 150, candidates: int = 20, dtype: str = "fp16") -> CheckpointInfo:
    c, m = ckpt.config, ckpt.model
    source = read_source_config(ckpt.path / TEACHER_DIR)
    summary = {
        "path": str(ckpt.path),
        "architecture": f"{source.model_type} ({ckpt.meta.teacher_class})",
        "task": c.task + (f" ({c.num_labels} labels)" if c.task == Task.PAIR else ""),
        "layers (input / cross)": f"{c.split} / {c.cross_layers} of {c.num_layers}",
        "hidden / heads / ffn": f"{c.hidden_size} / {source.num_attention_heads} / {source.intermediate_size}",
        "compression": f"{c.compress}x ({c.hidden_size} -> {c.rep_dim})" if c.compress > 1 else "none",
        "cross embeddings": "pos_x + type_x (paper)" if c.cross_embeddings else "none (DeFormer)",
        "max question / passage": f"{c.max_question_len} / {c.max_passage_len} tokens (stride {c.doc_stride})",
        "source": ckpt.meta.source or "?",
    }
    inp, cross = m.input, m.cross
    parameters = {
        "input: embeddings": count(inp.embeddings) + count(inp.embeddings_project),
        "input: layers": count(inp.layers),
        "compressor": count(inp.compressor),
        "decompressor": count(cross.decompressor),
        "cross: pos_x + type_x": count(cross.pos_x) + count(cross.type_x),
        "cross: layers": count(cross.layers),
        "cross: head": count(cross.head),
        "total": count(m),
    }
    shape = EncoderShape(c.num_layers, c.hidden_size, source.intermediate_size, c.rep_dim)
    cost = query_cost(shape, c.split, seq_q, seq_p, candidates, dtype)
    return CheckpointInfo(summary, parameters, cost, {"seq_q": seq_q, "seq_p": seq_p, "candidates": candidates, "dtype": dtype})

