"""Limits for untrusted uploads; one place so the CLI, the batch job and the tests agree."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Limits:
    max_bytes: int = 20 * 1024 * 1024  # a resume PDF with photos is a few MB; 60 MB is hostile
    max_pages: int = 20
    max_image_pixels: int = 40_000_000  # A4 at 600 dpi is ~35 Mpx
    max_docx_uncompressed: int = 50 * 1024 * 1024
    max_docx_ratio: float = 200.0  # text XML compresses ~10-30x; bombs ~1000x
    max_docx_entries: int = 2000
    max_ocr_side: int = 2400  # downscale bigger scans before OCR: accuracy holds, time halves
    timeout_s: float = 120.0  # wall clock per file, in the child
    cpu_s: int = 120  # CPU seconds per file (RLIMIT_CPU, counted from the file's start)
    memory_bytes: int = 3 * 1024**3  # RLIMIT_AS of the child (onnxruntime reserves address space)


DEFAULT_LIMITS = Limits()
