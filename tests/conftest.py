"""Shared fixtures: tiny models per (architecture, task), built once per session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from transformers.utils import logging as hf_logging

from tiny_models import TINY_ARCHS, build_tiny, minilm_path

hf_logging.set_verbosity_error()

# The models here are tiny: a second intra-op thread gains nothing, and on a shared 2-core CI machine a busy
# core makes every parallel op wait on the other thread (in a loaded run the training tests took 20-50x their
# one-thread time). One thread, as scripts/gpu_check.sh's rehearsal does, unless OMP_NUM_THREADS says otherwise.
if "OMP_NUM_THREADS" not in os.environ:
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory):
    """model_dir(arch, task) -> path of a source model directory ("minilm" = real weights, bare encoder)."""
    cache: dict[tuple[str, str], Path] = {}

    def get(arch: str, task: str = "qa") -> Path:
        if arch == "minilm":
            return minilm_path()
        if (arch, task) not in cache:
            cache[arch, task] = build_tiny(arch, task, tmp_path_factory.mktemp(f"{arch}-{task}"))
        return cache[arch, task]

    return get


ALL_ARCHS = (*TINY_ARCHS, "minilm")


REPO = Path(__file__).resolve().parents[1]
# the real data: data/ from scripts/get_data.sh, else a ../shared/data beside the repository
DATA_DIRS = (REPO / "data", REPO.parent / "shared" / "data")


@pytest.fixture(scope="session")
def script():
    """script(name) -> scripts/NAME.py imported as a module (scripts/ is not a package), for tests of their functions."""
    import importlib.util

    def load(name: str):
        spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    return load


@pytest.fixture(scope="session")
def disfl_qa() -> Path:
    for d in DATA_DIRS:
        path = d / "disfl_qa.task.json.gz"
        if path.is_file():
            return path
    pytest.skip("real data not found in data/ (bash scripts/get_data.sh fetches it)")


@pytest.fixture(scope="session")
def exported(model_dir, tmp_path_factory):
    """exported(arch, split, compress, task) -> (ckpt dir, export dir), made once per session."""
    from dtx.export.exporter import export_checkpoint
    from dtx.model.decouple import decouple

    cache = {}

    def get(arch="bert", split=2, compress=2, task="qa"):
        key = (arch, split, compress, task)
        if key not in cache:
            root = tmp_path_factory.mktemp("-".join(map(str, key)))
            ckpt = decouple(model_dir(arch, task), root / "ckpt", split=split, compress=compress, task=task, max_question_len=32)
            export_checkpoint(ckpt.path, root / "onnx", progress=False)
            cache[key] = (ckpt.path, root / "onnx")
        return cache[key]

    return get


@pytest.fixture(scope="session")
def engine(exported, tmp_path_factory):
    """engine(arch, precision, calib, task, **build options) -> (export dir, engine dir) of the split-2, 2x export."""
    from dtx.engines.build import BuildOptions, build_engine

    cache = {}

    def get(arch="bert", precision="fp32", calib=None, task="qa", **kw):
        key = (arch, precision, calib, task, tuple(sorted(kw.items())))
        if key not in cache:
            _, export_dir = exported(arch, 2, 2, task)
            out = tmp_path_factory.mktemp(f"engine-{arch}-{precision}-{task}") / "engine"
            opts = BuildOptions(precision=precision, calib=calib, calib_pairs=16, drift_pairs=24, **kw)
            build_engine(export_dir, out, opts, progress=False)
            cache[key] = (export_dir, out)
        return cache[key]

    return get
