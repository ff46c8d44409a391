"""dtx: inference optimisation for decoupled transformers.

`import dtx` stays light: heavy modules (torch, transformers, onnxruntime, TensorRT) load when
a function that needs them is called.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

__version__ = "0.1.0"

# Where torchao is installed (dtx's `int8` extra), transformers imports it with every model class, and its
# import logs a line per CUDA kernel a CPU machine cannot load and two deprecation notes from torch: noise
# before every command's own output. Those messages only are dropped; every other warning still shows.
KNOWN_NOISE = {"torchao": "Failed to load ", "torch.utils._pytree": "is an Enum subclass and is now natively supported"}
for _name, _text in KNOWN_NOISE.items():
    logging.getLogger(_name).addFilter(lambda record, text=_text: text not in record.getMessage())

if TYPE_CHECKING:
    from dtx.model.checkpoint import Checkpoint


def load(path: str) -> "Checkpoint":
    """Load a decoupled checkpoint directory: `.model`, `.config`, `.teacher()`, `.tokenizer()`."""
    from dtx.model.checkpoint import load_checkpoint

    return load_checkpoint(path)


__all__ = ["__version__", "load"]
