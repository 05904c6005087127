"""The OCR engine: rapidocr with the PP-OCR ONNX models its wheel bundles, loaded once per process.

Offline by construction: every model path is given explicitly from the installed
package's `models/` folder, so rapidocr never reaches for its download code
(it downloads only when a configured model file is missing). If a file is
missing we fail with a message instead.

The angle classifier is off (`Global.use_cls: False`): resumes are upright
pages, and the classifier turns some long English lines upside down (fixtures
README: CER 1.36 % with it, 0.59 % without).
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

_ENGINE: Any = None
_LOCK = threading.Lock()

DET_MODEL = "PP-OCRv6_det_small.onnx"
REC_MODEL = "PP-OCRv6_rec_small.onnx"


class OcrUnavailable(RuntimeError):
    """The OCR models are not installed on this box."""


def model_dir() -> Path:
    import rapidocr

    return Path(rapidocr.__file__).resolve().parent / "models"


def get_engine() -> Any:
    """The process-wide engine (loading takes a few seconds; do it once per worker)."""
    global _ENGINE
    with _LOCK:
        if _ENGINE is None:
            _ENGINE = load_engine()
        return _ENGINE


def load_engine(threads: int = 0) -> Any:
    logging.getLogger("RapidOCR").setLevel(logging.WARNING)
    from rapidocr import RapidOCR

    models = model_dir()
    det, rec = models / DET_MODEL, models / REC_MODEL
    for path in (det, rec):
        if not path.is_file():
            raise OcrUnavailable(f"OCR model {path.name} missing from {models}; reinstall rapidocr")
    params: dict[str, Any] = {
        "Global.use_cls": False,
        "Global.log_level": "warning",
        "Det.model_path": str(det),
        "Rec.model_path": str(rec),
    }
    if threads:
        params["EngineConfig.onnxruntime.intra_op_num_threads"] = threads
    engine = RapidOCR(params=params)
    logging.getLogger("RapidOCR").setLevel(logging.WARNING)
    return engine
