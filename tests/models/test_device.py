"""The device choice, on this CPU-only machine and with the CUDA probes answering yes (issue #5)."""

from __future__ import annotations

import pytest

from models import device
from models.device import DeviceUnavailable, compute_type, onnx_providers, pick_device


def test_this_machine_has_no_usable_cuda() -> None:
    """The real probes (ctranslate2's device count, torch's CPU build) say no GPU here."""
    assert device.ctranslate2_cuda() is False
    assert device.torch_cuda() is False
    assert device.cuda_usable() is False


def test_auto_and_cpu_pick_the_cpu_here() -> None:
    assert pick_device("auto") == "cpu"
    assert pick_device("cpu") == "cpu"
    assert pick_device("auto", "ctranslate2") == "cpu"


def test_cuda_without_a_gpu_is_a_clear_error() -> None:
    with pytest.raises(DeviceUnavailable, match=r'ai\.device is "cuda".*set ai\.device to "auto"'):
        pick_device("cuda")
    with pytest.raises(DeviceUnavailable, match="torch finds no usable CUDA GPU"):
        pick_device("cuda", "torch")


def test_unknown_setting_is_refused() -> None:
    with pytest.raises(ValueError, match="auto, cpu or cuda"):
        pick_device("gpu")


def test_a_usable_gpu_is_taken_by_auto_and_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(device, "ctranslate2_cuda", lambda: True)
    assert pick_device("auto") == "cuda"
    assert pick_device("cuda", "ctranslate2") == "cuda"
    assert pick_device("cpu") == "cpu"  # an explicit cpu is honoured even with a GPU
    assert pick_device("auto", "torch") == "cpu"  # torch here is the CPU build


def test_compute_type_follows_the_device() -> None:
    assert compute_type("cpu") == "int8"
    assert compute_type("cuda") == "float16"


def test_onnx_providers_fall_back_to_the_cpu(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    assert onnx_providers("cpu") == ["CPUExecutionProvider"]
    assert onnx_providers("cuda") == ["CPUExecutionProvider"]  # onnxruntime here has no CUDA
    assert "no CUDA provider" in caplog.text
    monkeypatch.setattr(device, "onnxruntime_cuda", lambda: True)
    assert onnx_providers("cuda") == ["CUDAExecutionProvider", "CPUExecutionProvider"]
