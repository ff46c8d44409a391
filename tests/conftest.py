"""Shared fixtures: tiny models per (architecture, task), built once per session."""

from __future__ import annotations

from pathlib import Path

import pytest
from transformers.utils import logging as hf_logging

from tiny_models import TINY_ARCHS, build_tiny, minilm_path

hf_logging.set_verbosity_error()


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
