"""Embedders from pretrained weights on local disk (CLIP or any other image encoder).

Nothing can be downloaded at run time, so the weights must already be a file on this machine; a missing file
is reported when the embedder is built from the config, before any stage runs.

The file is either a ``torch.export`` program (``torch.export.save``, a zip) or an ONNX model (run with
onnxruntime on the CPU); the file's own bytes say which, whatever its name. Either maps a float batch of shape
(b, C, H, W) in [0, 1] to (b, d) embeddings, and either fixes the network in the file, so no model code is needed
here. Whatever the encoder needs beyond that (resizing to its own input size, normalising with its mean and
standard deviation) belongs inside the file. The batch axis may be dynamic or fixed: an encoder made for exactly B
images gets batches of B, the last one padded with blank images whose embeddings are dropped. A grayscale image
is repeated over the channels of an encoder that takes three. Both formats go through the same batching and the
same checks of what the file declares (:func:`signature_problem`); an ONNX model's declaration is read from its
bytes when the embedder is built, a torch.export program's when it is loaded (that needs torch).
README ("Pretrained embeddings") shows an export to each format.
"""

from __future__ import annotations

import mmap
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from plugins.arrays import Array
from plugins.errors import InputError

HOW = "(README: Pretrained embeddings)"
FLOATS = ("float32", "float16", "float64")
# ONNX's TensorProto.DataType numbers under numpy's names, so that both formats name a type alike in a refusal.
ONNX_TYPES = {1: "float32", 2: "uint8", 3: "int8", 4: "uint16", 5: "int16", 6: "int32", 7: "int64", 8: "string",
              9: "bool", 10: "float16", 11: "float64", 12: "uint32", 13: "uint64", 14: "complex64",
              15: "complex128", 16: "bfloat16"}

Span = tuple[int, int]
Fields = dict[int, list[int | Span]]


def check_available(path: str) -> None:
    """Raise :class:`InputError` naming ``path`` unless it is an existing file."""
    weights = Path(str(path)).expanduser()
    if not weights.is_file():
        reason = "is a directory, not a file" if weights.is_dir() else "does not exist"
        raise InputError(
            f"embedder.weights_path: pretrained embedder weights file {reason}: {weights} (weights cannot be "
            "downloaded here; copy the exported model file to this path or pick embedder=pixels)"
        )


@dataclass(frozen=True)
class Signature:
    """What an encoder file declares: its inputs' names; the first input's shape (None on a dynamic axis, None
    altogether where the file does not say) and element type (numpy's name); its first output's shape (None: not
    said)."""

    inputs: tuple[str, ...]
    shape: tuple[int | None, ...] | None
    dtype: str
    output_shape: tuple[int | None, ...] | None = None


def describe(shape: tuple[int | None, ...]) -> str:
    """``shape`` as a refusal writes it: ``b`` for a dynamic batch axis, ``?`` for any other dynamic axis."""
    return "(" + ", ".join(("b" if i == 0 else "?") if s is None else str(s) for i, s in enumerate(shape)) + ")"


def signature_problem(signature: Signature) -> str | None:
    """What keeps ``signature`` from being an image encoder's, as the middle of a refusal; None if nothing does."""
    shape = signature.shape
    if len(signature.inputs) != 1:
        return (f"takes {len(signature.inputs)} inputs ({', '.join(signature.inputs)}); an encoder takes one, "
                "the image batch (b, C, H, W)")
    if signature.dtype not in FLOATS:
        return (f"takes {signature.dtype} input; an encoder takes float images (b, C, H, W) in [0, 1] "
                f"({', '.join(FLOATS)})")
    if shape is not None and len(shape) != 4:
        return f"takes a rank-{len(shape)} input {describe(shape)}; an encoder takes a rank-4 batch (b, C, H, W)"
    if shape is not None and shape[1] not in (None, 1, 3):
        return f"takes {shape[1]} channels {describe(shape)}; an encoder takes 1 (grayscale) or 3 (colour)"
    out = signature.output_shape
    if out is not None and len(out) != 2:
        return f"returns a rank-{len(out)} output {describe(out)}; an encoder returns (b, d) embeddings"
    return None


def refuse_signature(path: str, signature: Signature | None) -> None:
    """Raise the one-line :class:`InputError` for an encoder file whose declaration cannot be an encoder's."""
    problem = None if signature is None else signature_problem(signature)
    if problem is not None:
        raise InputError(f"embedder.weights_path: {path} {problem} {HOW}")


def program_signature(program: Any) -> Signature | None:
    """What a torch.export program declares of its first input (None: not known). Its output is left unchecked:
    programs that return (b, d, 1, 1) have always been flattened to (b, d), and still are."""
    names = tuple(str(n) for n in getattr(program.graph_signature, "user_inputs", ()))
    for node in program.graph.nodes:
        if node.op == "placeholder" and node.name in names[:1]:
            value = node.meta.get("val")
            if value is None:
                return None
            shape = tuple(s if isinstance(s, int) else None for s in value.shape)
            return Signature(names, shape, str(value.dtype).removeprefix("torch."))
    return None


# --- reading an ONNX model's declaration from its bytes ---------------------------------------------------
# The ``onnx`` package is no dependency of the runner, and onnxruntime reads a declaration only by building the
# whole model (seconds and the weights' memory for CLIP), so the few fields needed are read from the protobuf
# wire format directly. A file cut off inside its graph does not parse; one cut later still lacks its opset, and
# anything else wrong with a file that parses is onnxruntime's to refuse when it loads the model.


def _varint(data: mmap.mmap, pos: int, end: int) -> tuple[int, int]:
    value = shift = 0
    while shift < 70:
        if pos >= end:
            raise ValueError("a field runs past the end of the file")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7
    raise ValueError("a number longer than protobuf allows")


def _skip(data: mmap.mmap, wire: int, pos: int, end: int) -> tuple[int | Span, int]:
    """The value of a field of wire type ``wire`` at ``pos`` (a number, or the span of its bytes), and where the
    next field starts."""
    if wire == 0:
        return _varint(data, pos, end)
    if wire == 2:
        length, pos = _varint(data, pos, end)
        if pos + length > end:
            raise ValueError("a field runs past the end of the file")
        return (pos, pos + length), pos + length
    if wire in (1, 5):
        size = 8 if wire == 1 else 4
        if pos + size > end:
            raise ValueError("a field runs past the end of the file")
        return int.from_bytes(data[pos : pos + size], "little"), pos + size
    raise ValueError(f"protobuf wire type {wire}, which ONNX does not use")


def _message(data: mmap.mmap, span: Span) -> Fields:
    """The fields of the protobuf message at ``span``, by number, in order."""
    fields: Fields = {}
    pos, end = span
    while pos < end:
        key, pos = _varint(data, pos, end)
        if key >> 3 == 0:
            raise ValueError("field number 0")
        value, pos = _skip(data, key & 7, pos, end)
        fields.setdefault(key >> 3, []).append(value)
    return fields


def _spans(fields: Fields, number: int) -> list[Span]:
    return [v for v in fields.get(number, ()) if isinstance(v, tuple)]


def _number(fields: Fields, number: int) -> int | None:
    values = [v for v in fields.get(number, ()) if isinstance(v, int)]
    return values[-1] if values else None  # protobuf: the last of a repeated scalar wins


def _text(data: mmap.mmap, fields: Fields, number: int) -> str:
    spans = _spans(fields, number)
    return data[spans[-1][0] : spans[-1][1]].decode("utf-8", "replace") if spans else ""


def _tensor_type(data: mmap.mmap, info: Fields) -> tuple[str, tuple[int | None, ...] | None]:
    """A ValueInfoProto's element type and shape (None where it declares none)."""
    kinds = [_message(data, s) for s in _spans(info, 2)]  # ValueInfoProto.type
    tensors = [_message(data, s) for t in kinds for s in _spans(t, 1)]  # TypeProto.tensor_type
    if not tensors:
        return "non-tensor", None
    elem = _number(tensors[-1], 1) or 0
    shapes = _spans(tensors[-1], 2)
    if not shapes:
        return ONNX_TYPES.get(elem, f"ONNX type {elem}"), None
    dims = [_message(data, s) for s in _spans(_message(data, shapes[-1]), 1)]
    sizes = [_number(d, 1) for d in dims]  # a dim_param (a name) or nothing: a dynamic axis
    shape = tuple(s if s is not None and 0 < s < 2**62 else None for s in sizes)
    return ONNX_TYPES.get(elem, f"ONNX type {elem}"), shape


def _initialised(data: mmap.mmap, graph: Fields) -> set[str]:
    """The names of a graph's initializers: an older model lists its weights among the inputs too."""
    tensors = [_message(data, s) for s in _spans(graph, 5)]
    tensors += [_message(data, v) for s in _spans(graph, 15) for v in _spans(_message(data, s), 1)]
    return {_text(data, t, 8) for t in tensors}


def _read_model(data: mmap.mmap) -> Signature:
    model = _message(data, (0, len(data)))
    graphs = _spans(model, 7)
    if _number(model, 1) is None or len(graphs) != 1 or not _spans(model, 8):
        raise ValueError("no ir_version, graph and opset_import")
    graph = _message(data, graphs[0])
    weights = _initialised(data, graph)
    inputs = [info for info in (_message(data, s) for s in _spans(graph, 11)) if _text(data, info, 1) not in weights]
    outputs = [_message(data, s) for s in _spans(graph, 12)]
    if not outputs:
        raise ValueError("a graph without outputs")
    dtype, shape = _tensor_type(data, inputs[0]) if inputs else ("no", None)
    names = tuple(_text(data, info, 1) for info in inputs)
    return Signature(names, shape, dtype, _tensor_type(data, outputs[0])[1])


def onnx_signature(path: str) -> Signature:
    """What the ONNX model at ``path`` declares, read without building it; ValueError if the file is none."""
    with open(path, "rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
        return _read_model(data)


def file_format(path: str) -> tuple[str, Signature | None]:
    """``"onnx"`` and the model's declaration, or ``"torch.export"`` and None (its declaration needs torch);
    a one-line refusal for a file that is neither, or an ONNX model that cannot be an encoder."""
    try:
        signature = onnx_signature(path)
    except (ValueError, OSError) as exc:  # mmap refuses an empty file with ValueError too
        if zipfile.is_zipfile(path):  # what torch.export.save writes
            return "torch.export", None
        reason = f" (read as ONNX: {exc})" if path.lower().endswith(".onnx") else ""
        raise InputError(
            f"embedder.weights_path: {path} is not a torch.export program or an ONNX model{reason}; save one with "
            f"torch.export.save or export one to ONNX {HOW}"
        ) from None
    refuse_signature(path, signature)
    return "onnx", signature


def run_threads() -> int:
    """The threads the run allows: the smallest limit on the loaded BLAS and OpenMP pools, which the runner sets
    to ``threads`` (``threadpool_limits``) before it builds anything."""
    from threadpoolctl import threadpool_info

    return max(1, min((int(pool["num_threads"]) for pool in threadpool_info()), default=1))


def onnx_session(path: str) -> Any:
    """An onnxruntime session for the model at ``path``: on the CPU, as the torch.export path runs, with the
    run's threads and one operator at a time, so that a config gives the same embeddings on every run."""
    import onnxruntime  # imported here, as torch is, so that the other plugins never pay for it

    options = onnxruntime.SessionOptions()
    threads = run_threads()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = threads
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    # Idle threads would otherwise spin between batches, taking cores from the rest of the run.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3  # its warnings (unused initializers and the like) are nothing a user can act on
    return onnxruntime.InferenceSession(path, sess_options=options, providers=["CPUExecutionProvider"])


class LocalWeights:
    """Embed images with the exported network at ``weights_path``; construction fails if the file is absent, is
    neither format, or (ONNX) declares an input or output no encoder has."""

    # A pass of a network over the pool takes minutes: the runner keeps its rows (compute.embedding_cache).
    worth_caching = True

    def __init__(self, weights_path: str, batch_size: int = 256) -> None:
        check_available(weights_path)
        self.path = str(Path(str(weights_path)).expanduser())
        self.format, self._signature = file_format(self.path)
        self.batch_size = int(batch_size)
        self._encode: Callable[[Array], Array] | None = None

    def _load(self) -> Callable[[Array], Array]:
        """The encoder as a function of a batch in the input's own dtype, loaded once."""
        if self._encode is None:
            self._encode = self._load_onnx() if self.format == "onnx" else self._load_program()
        return self._encode

    def _load_program(self) -> Callable[[Array], Array]:
        import torch  # imported here so the metric and filter plugins never pay for torch

        try:
            program = torch.export.load(self.path)
        except Exception as exc:  # torch raises many kinds for a file that is not an exported program
            raise InputError(
                f"embedder.weights_path: {self.path} is not a torch.export program ({type(exc).__name__}); "
                f"save one with torch.export.save {HOW}"
            ) from None
        self._signature = program_signature(program)
        refuse_signature(self.path, self._signature)
        module = program.module()

        def encode(batch: Array) -> Array:
            with torch.no_grad():
                return np.asarray(module(torch.from_numpy(batch)).numpy())

        return encode

    def _load_onnx(self) -> Callable[[Array], Array]:
        try:
            session = onnx_session(self.path)
        except Exception as exc:  # onnxruntime has its own kinds for a model it cannot build
            first = (str(exc).splitlines() or [""])[0][:200]
            raise InputError(
                f"embedder.weights_path: {self.path} is an ONNX model onnxruntime cannot load "
                f"({type(exc).__name__}: {first}) {HOW}"
            ) from None
        feed, fetch = session.get_inputs()[0].name, session.get_outputs()[0].name

        def encode(batch: Array) -> Array:
            return np.asarray(session.run([fetch], {feed: batch})[0])

        return encode

    def _fit_input(self, x: Array) -> Array:
        """``x`` (n, C, H, W) made to fit the encoder's input: channels repeated for a colour encoder, or a
        one-line refusal naming both shapes."""
        shape = self._signature.shape if self._signature else None
        if shape is None:
            return x
        if shape[1] == 3 and x.shape[1] == 1:
            x = np.repeat(x, 3, axis=1)
        if any(s is not None and s != got for s, got in zip(shape[1:], x.shape[1:], strict=True)):
            raise InputError(
                f"embedder.weights_path: {self.path} takes images of shape {describe(shape)}, these are "
                f"({', '.join(map(str, x.shape[1:]))}); set project.source.image_size (and grayscale) to match, or "
                f"export the encoder with its own resizing inside {HOW}"
            )
        return x.astype(self._signature.dtype if self._signature else np.float32, copy=False)

    def fit_transform(self, images: Array) -> Array:
        """(n, H, W) or (n, H, W, C) images in [0, 1] -> (n, d) float32 embeddings, batch by batch."""
        x = np.asarray(images, dtype=np.float32)
        # Channels first, as torch vision networks expect; grayscale gets a single channel axis.
        x = x[:, None] if x.ndim == 3 else np.moveaxis(x, -1, 1)
        encode = self._load()
        x = self._fit_input(x)
        fixed = self._signature.shape[0] if self._signature and self._signature.shape else None
        step = fixed or self.batch_size
        parts = []
        for start in range(0, len(x), step):
            chunk = x[start : start + step]
            n = len(chunk)
            if fixed is not None and n < fixed:
                # An encoder made for exactly `fixed` images: pad with blanks and drop their embeddings.
                chunk = np.concatenate([chunk, np.zeros((fixed - n, *chunk.shape[1:]), dtype=chunk.dtype)])
            out = encode(np.ascontiguousarray(chunk))
            parts.append(out.reshape(len(chunk), -1)[:n].astype(np.float32))
        return np.concatenate(parts) if parts else np.zeros((0, 0), dtype=np.float32)
