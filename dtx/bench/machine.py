"""What a measurement ran on, for the `machine` field of every bench JSON: a GPU figure is named by
its card, driver and torch build (a CPU figure by its platform and cores)."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess


def nvidia_driver() -> str | None:
    """The NVIDIA driver version (nvidia-smi's), or None where there is no nvidia-smi."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return None
    try:
        out = subprocess.run([smi, "--query-gpu=driver_version", "--format=csv,noheader"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else None


def machine_info(device: str = "cpu") -> dict:
    """Platform, CPU (model and integer ISA), torch; on CUDA also the card's name, compute capability, memory, driver and CUDA runtime."""
    import torch

    from dtx.engines.cpu import cpu_info

    info = {"platform": platform.platform(), "processor": platform.processor() or platform.machine(), "cpu": cpu_info(), "cpus": os.cpu_count(), "torch": torch.__version__}
    if device == "cuda":
        if not torch.cuda.is_available():
            return info | {"gpu": None}
        props = torch.cuda.get_device_properties(0)
        info |= {
            "gpu": torch.cuda.get_device_name(),
            "compute_capability": f"{props.major}.{props.minor}",
            "gpu_memory_gib": round(props.total_memory / 2**30, 1),
            "driver": nvidia_driver(),
            "cuda_runtime": torch.version.cuda,
        }
    return info
