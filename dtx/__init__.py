"""dtx: inference optimisation for decoupled transformers.

`import dtx` stays light: heavy modules (torch, transformers, onnxruntime, TensorRT) load when
a function that needs them is called.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

__version__ = "0.1.0"

if TYPE_CHECKING:
    from dtx.model.checkpoint import Checkpoint


def load(path: str) -> "Checkpoint":
    """Load a decoupled checkpoint directory: `.model`, `.config`, `.teacher()`, `.tokenizer()`."""
    from dtx.model.checkpoint import load_checkpoint

    return load_checkpoint(path)


__all__ = ["__version__", "load"]
