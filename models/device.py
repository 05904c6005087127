"""CPU or CUDA for the local models: `Settings.ai.device` (auto|cpu|cuda) made concrete.

"auto" takes the GPU only when a runtime can really use it (a CUDA driver and a
CUDA build), not merely when one is plugged in; "cuda" without a usable GPU is
a configuration error, said at start rather than found in the middle of a job
(issue #5: CPU by default, CUDA when present).
"""

from __future__ import annotations

import functools
import logging
from typing import Literal

Runtime = Literal["any", "ctranslate2", "torch", "onnxruntime"]

log = logging.getLogger("enclave.models")


class DeviceUnavailable(RuntimeError):
    """`ai.device = "cuda"` was asked for, but no runtime here can use a CUDA GPU."""


@functools.cache
def ctranslate2_cuda() -> bool:
    try:
        import ctranslate2
    except ImportError:
        return False
    try:
        return int(ctranslate2.get_cuda_device_count()) > 0
    except RuntimeError:  # a CUDA build without a driver raises rather than answering 0
        return False


@functools.cache
def torch_cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


@functools.cache
def onnxruntime_cuda() -> bool:
    try:
        import onnxruntime
    except ImportError:
        return False
    return "CUDAExecutionProvider" in onnxruntime.get_available_providers()


def cuda_usable(runtime: Runtime = "any") -> bool:
    """Whether `runtime` (or, for "any", CTranslate2 or torch) can run on a CUDA GPU."""
    probes = {"ctranslate2": ctranslate2_cuda, "torch": torch_cuda, "onnxruntime": onnxruntime_cuda}
    if runtime == "any":
        return ctranslate2_cuda() or torch_cuda()
    return probes[runtime]()


def pick_device(setting: str, runtime: Runtime = "any") -> str:
    """ "cuda" or "cpu" for `setting` (auto|cpu|cuda); raises DeviceUnavailable for a
    "cuda" this box cannot honour."""
    if setting not in ("auto", "cpu", "cuda"):
        raise ValueError(f"ai.device must be auto, cpu or cuda, not {setting!r}")
    if setting == "cpu":
        return "cpu"
    if cuda_usable(runtime):
        return "cuda"
    if setting == "cuda":
        what = "CTranslate2 or torch" if runtime == "any" else runtime
        raise DeviceUnavailable(
            f'ai.device is "cuda" but {what} finds no usable CUDA GPU on this box (no GPU, '
            'no driver, or a CPU-only build); set ai.device to "auto" or "cpu"'
        )
    return "cpu"


def compute_type(device: str) -> str:
    """CTranslate2 precision: float16 on a GPU; int8 on the CPU (issue #5, for speed)."""
    return "float16" if device == "cuda" else "int8"


def onnx_providers(device: str) -> list[str]:
    """onnxruntime providers, best first; the CPU stays as the fallback for any node."""
    if device == "cuda" and onnxruntime_cuda():
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    if device == "cuda":
        log.warning("onnxruntime has no CUDA provider here (onnxruntime-gpu); using the CPU")
    return ["CPUExecutionProvider"]
