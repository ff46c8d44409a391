"""`dtx export`: a checkpoint in, input.onnx + cross.onnx + coupled.onnx + manifest.json out.

The export directory is built in a temp directory and swapped in only after every graph passed
its parity check, so an interrupted or failed export never leaves a graph a later command
could pick up.
"""

from __future__ import annotations

import shutil
import time
import uuid
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from dtx.atomic import atomic_dir, check_output, write_json
from dtx.errors import DtxError
from dtx.export.manifest import EXPORT, MANIFEST_FILE, TOKENIZER_DIR, ExportManifest, build_manifest, read_manifest
from dtx.export.onnx_graph import export_graph
from dtx.export.parity import ParityResult, default_shapes, measure
from dtx.export.spec import COUPLED, CROSS, INPUT, graph_specs
from dtx.model.checkpoint import TEACHER_DIR, load_checkpoint
from dtx.model.samples import random_pairs
from dtx.model.surgery import build_coupled

DEFAULT_OPSET = 18
MIN_OPSET = 17


class ParityError(DtxError):
    """An exported graph disagrees with PyTorch beyond tolerance."""


def export_checkpoint(
    ckpt_dir: str | Path,
    out_dir: str | Path,
    opset: int = DEFAULT_OPSET,
    shapes: list[tuple[int, int, int]] | None = None,
    progress: bool = True,
    overwrite: bool = False,
) -> ExportManifest:
    """Export the three graphs, measure parity, write the manifest; returns the manifest as published.

    An existing export in `out_dir` is replaced only with `overwrite` (as `dtx decouple` does),
    and never when the directory also holds files that are not the export's: those are the user's.
    """
    if opset < MIN_OPSET:
        raise DtxError(f"opset {opset} has no LayerNormalization; use --opset {MIN_OPSET} or newer")
    import onnx

    if opset > onnx.defs.onnx_opset_version():
        raise DtxError(f"opset {opset} does not exist yet (this onnx knows up to {onnx.defs.onnx_opset_version()}); use --opset {DEFAULT_OPSET}")
    out_dir = Path(out_dir)
    check_output(out_dir, EXPORT, overwrite)
    ckpt = load_checkpoint(ckpt_dir)
    cfg = ckpt.config
    teacher = ckpt.teacher()
    seg = ckpt.segmenter()
    specs = graph_specs(cfg.task, cfg.rep_dim, cfg.num_labels)
    export_id = uuid.uuid4().hex
    meta = {"dtx.export_id": export_id, "dtx.split": str(cfg.split), "dtx.rep_dim": str(cfg.rep_dim), "dtx.task": cfg.task}
    max_seq = cfg.max_question_len + cfg.max_passage_len

    # tracing sample: no axis of size 1 (torch.export would specialise it) and bq != b
    sample = random_pairs(seg, np.random.default_rng(1), 3, min(7, cfg.max_question_len), min(11, cfg.max_passage_len), bq=2)
    q, p, c = (
        tuple(torch.from_numpy(a) for a in (x.input_ids, x.attention_mask, x.token_type_ids))
        for x in (sample.question, sample.passage, sample.coupled())
    )
    with torch.no_grad():
        q_rep, p_rep = ckpt.model.input(*q), ckpt.model.input(*p)
    jobs = [
        (INPUT, ckpt.model.input, p),
        (CROSS, ckpt.model.cross, (q_rep, q[1], p_rep, p[1])),
        (COUPLED, build_coupled(teacher), c),
    ]
    timings: dict[str, float] = {}
    with atomic_dir(out_dir, overwrite=overwrite, kind=EXPORT) as tmp:
        bar = tqdm(jobs, desc="export", unit="graph", disable=not progress)
        for graph, module, args in bar:
            bar.set_postfix_str(specs[graph].file)
            start = time.perf_counter()
            export_graph(module, args, specs[graph], tmp / specs[graph].file, opset, max_seq, {**meta, "dtx.graph": graph})
            timings[graph] = time.perf_counter() - start
        start = time.perf_counter()
        results = measure(tmp, ckpt.model, teacher, seg, shapes or default_shapes(cfg.max_question_len, cfg.max_passage_len))
        timings["parity"] = time.perf_counter() - start
        _raise_on_failure(results)
        shutil.copytree(ckpt.path / TEACHER_DIR, tmp / TOKENIZER_DIR, ignore=_not_tokenizer)
        write_json(tmp / MANIFEST_FILE, build_manifest(tmp, ckpt, specs, export_id, opset, results, timings))
    return read_manifest(out_dir)


def _not_tokenizer(directory: str, names: list[str]) -> list[str]:
    return [n for n in names if not n.startswith(("tokenizer", "vocab", "merges", "special_tokens"))]


def _raise_on_failure(results: list[ParityResult]) -> None:
    failed = [r for r in results if not r.passed]
    if failed:
        worst = max(failed, key=lambda r: r.max_abs)
        raise ParityError(
            f"{len(failed)} parity check(s) above tolerance; worst: {worst.check} {worst.output} at {worst.shape}: "
            f"max-abs {worst.max_abs:.3g} > {worst.tolerance:g}. Nothing was written"
        )

