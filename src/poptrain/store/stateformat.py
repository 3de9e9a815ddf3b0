"""A member's state as bytes that load without running code: JSON for plain data, raw bytes for
plain CPU tensors, torch's weights-only format for other tensors, numpy's format without pickle
for arrays.

Layout: an 8-byte big-endian header length, the header (UTF-8 JSON: the state's tree with
tensors and arrays replaced by references, and where their bytes lie), then those bytes.
Anything the tree cannot carry is refused when saving, naming its type and where it sits.

A plain tensor (dense, on the CPU, a dtype of `RAW_DTYPES`, no autograd) is written as its
bytes with its dtype and shape in the header: no archive to build on saving, no unpickler on
loading (torch's archive cost a checkpoint of 600 KB over 1 ms each way). Other tensors (a GPU
tensor, a Parameter, a quantised or sparse one) go through torch's weights-only format, as
every tensor did in files written before.
"""

from __future__ import annotations

import base64
import io
import json
import sys
from collections import OrderedDict
from typing import Any

from ..errors import UnsupportedState

SIZE = 8  # bytes of the header length
RAW_DTYPES = ("float64", "float32", "float16", "bfloat16", "complex128", "complex64", "int64", "int32", "int16",
              "int8", "uint8", "bool")  # tensors of these dtypes are written as raw bytes (by name in the header)
CARRIED = ("torch tensors, numpy arrays and numpy scalars, and dicts, lists and tuples of numbers, strings, "
           "bytes, bools and None")


class BadState(ValueError):
    """Bytes whose checksum matches but that are not a state this module wrote."""


def _where(path: str) -> str:
    return f"state{path}" if path else "the state itself"


def _torch_tensor(value: Any) -> bool:
    """Whether `value` is a torch tensor, without importing torch for states that hold none."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(value, torch.Tensor)


class _Encoder:
    """Walks a state once, building the JSON tree and collecting tensors and arrays."""

    def __init__(self) -> None:
        self.tensors: list[Any] = []  # written with torch's weights-only format
        self.raw: list[Any] = []  # plain CPU tensors, written as their bytes
        self.arrays: list[bytes] = []

    def tree(self, value: Any, path: str) -> Any:
        kind = type(value)
        if value is None or kind in (bool, int, str):
            return value
        if kind is float:
            return value
        if kind is list:
            return [self.tree(v, f"{path}[{i}]") for i, v in enumerate(value)]
        if kind is tuple:
            return {"tuple": [self.tree(v, f"{path}[{i}]") for i, v in enumerate(value)]}
        if kind is dict or kind is OrderedDict:
            items = [[self.key(k, path), self.tree(v, f"{path}[{k!r}]")] for k, v in value.items()]
            return {"odict" if kind is OrderedDict else "dict": items}
        if kind is bytes:
            return {"bytes": base64.b64encode(value).decode("ascii")}
        if _torch_tensor(value):
            import torch

            if kind not in (torch.Tensor, torch.nn.Parameter):
                raise UnsupportedState(f"{_where(path)} is a {kind.__module__}.{kind.__qualname__} (a tensor subclass), "
                                       f"which checkpoints cannot carry without pickle: return a plain tensor")
            if _plain(torch, value):
                self.raw.append(value)
                return {"raw": len(self.raw) - 1}
            self.tensors.append(value)
            return {"tensor": len(self.tensors) - 1}
        numpy = sys.modules.get("numpy")
        if numpy is not None and isinstance(value, (numpy.ndarray, numpy.generic)):
            return self._array(numpy, value, path)
        raise UnsupportedState(
            f"{_where(path)} is a {kind.__module__}.{kind.__qualname__}, which checkpoints cannot carry without "
            f"pickle (they carry {CARRIED}): convert it in state_dict(), or set POPTRAIN_ALLOW_PICKLE=1 "
            f"if every reader of this store trusts it")

    def key(self, key: Any, path: str) -> Any:
        """A dict key: strings, numbers, bools, None and tuples of them (what a state_dict uses)."""
        if key is None or type(key) in (bool, int, float, str):
            return key
        if type(key) is tuple:
            return {"tuple": [self.key(k, path) for k in key]}
        raise UnsupportedState(f"{_where(path)} has a key of type {type(key).__qualname__} ({key!r}), which "
                               f"checkpoints cannot carry: use strings or numbers as keys")

    def _array(self, numpy: Any, value: Any, path: str) -> Any:
        scalar = isinstance(value, numpy.generic)
        array = numpy.asarray(value)
        if array.dtype.hasobject:
            raise UnsupportedState(f"{_where(path)} is a numpy array of Python objects, which checkpoints cannot "
                                   f"carry without pickle: use a numeric dtype or a list")
        buffer = io.BytesIO()
        numpy.save(buffer, array, allow_pickle=False)
        self.arrays.append(buffer.getvalue())
        return {"scalar" if scalar else "array": len(self.arrays) - 1}


def _plain(torch: Any, value: Any) -> bool:
    """Whether a tensor round-trips as its raw bytes, dtype and shape alone."""
    return (type(value) is torch.Tensor and value.layout == torch.strided and value.device.type == "cpu"
            and not value.requires_grad and not value.is_conj() and not value.is_neg()
            and _dtype_name(value) in RAW_DTYPES)


def _dtype_name(tensor: Any) -> str:
    """A tensor's dtype as the header names it ("float32")."""
    return str(tensor.dtype).removeprefix("torch.")


def _raw_bytes(torch: Any, tensor: Any) -> Any:
    """A plain tensor's elements, in order, as a buffer (no copy when it is contiguous already)."""
    flat = tensor.reshape(-1)
    if flat.numel() and flat.stride(0) != 1:
        # an expanded or strided view: `contiguous()` would keep a size-1 dimension's stride (0, or a slice's step),
        # which no byte view takes
        flat = torch.empty(flat.shape, dtype=flat.dtype).copy_(flat)
    return flat.view(torch.uint8).numpy()


def encode(state: Any) -> bytes:
    """The state as bytes; UnsupportedState if it holds a value that needs pickle."""
    encoder = _Encoder()
    try:
        tree = encoder.tree(state, "")
    except RecursionError:
        raise UnsupportedState("the state is nested too deeply to checkpoint") from None
    sections: list[bytes] = []
    tensors = None
    if encoder.tensors:
        import torch

        buffer = io.BytesIO()
        torch.save(encoder.tensors, buffer)
        sections.append(buffer.getvalue())
        tensors = [0, len(sections[0])]
    offset = sum(map(len, sections))
    raw = []
    if encoder.raw:
        import torch

        for tensor in encoder.raw:
            blob = _raw_bytes(torch, tensor)
            raw.append([_dtype_name(tensor), list(tensor.shape), offset, blob.nbytes])
            sections.append(blob)
            offset += blob.nbytes
    arrays = []
    for blob in encoder.arrays:
        arrays.append([offset, len(blob)])
        sections.append(blob)
        offset += len(blob)
    header = {"tree": tree, "tensors": tensors, "arrays": arrays, **({"raw": raw} if raw else {})}
    header = json.dumps(header, separators=(",", ":")).encode()
    return b"".join([len(header).to_bytes(SIZE, "big"), header, *sections])  # one copy of the sections


def decode(payload: bytes) -> Any:
    """The state `encode` wrote; BadState for bytes it did not write. Nothing in them is executed."""
    try:
        length = int.from_bytes(payload[:SIZE], "big")
        header = json.loads(payload[SIZE:SIZE + length])
        body = memoryview(payload)[SIZE + length:]
        return _Decoder(header, body).tree(header["tree"])
    except BadState:
        raise
    except (ValueError, TypeError, KeyError, IndexError, RecursionError, UnicodeDecodeError) as exc:
        raise BadState(f"{type(exc).__name__}: {exc}") from None


class _Decoder:
    def __init__(self, header: dict[str, Any], body: memoryview) -> None:
        self.body, self.arrays, self.raw = body, header["arrays"], header.get("raw", [])
        self.tensors = self._tensors(header["tensors"]) if header["tensors"] is not None else []

    def _section(self, where: Any) -> memoryview:
        start, size = where
        if not (type(start) is int and type(size) is int and 0 <= start and 0 <= size and start + size <= len(self.body)):
            raise BadState(f"a section at {where!r} lies outside the file")
        return self.body[start:start + size]

    def _tensors(self, where: Any) -> list[Any]:
        try:
            import torch
        except ImportError:
            raise BadState("it holds torch tensors and torch is not installed") from None
        try:  # weights_only: the unpickler accepts tensors and plain containers, never arbitrary objects
            tensors = torch.load(io.BytesIO(self._section(where)), weights_only=True)
        except Exception as exc:  # torch raises several types for a malformed or hostile archive
            raise BadState(f"its tensors do not load as weights only ({type(exc).__name__})") from None
        if type(tensors) is not list or not all(isinstance(t, torch.Tensor) for t in tensors):
            raise BadState("its tensor section is not a list of tensors")
        return tensors

    def _raw(self, where: Any) -> Any:
        """A tensor written as its bytes: dtype and shape checked against them, the bytes copied into its own storage."""
        try:
            import torch
        except ImportError:
            raise BadState("it holds torch tensors and torch is not installed") from None
        dtype, shape, start, size = where
        if (dtype not in RAW_DTYPES or type(shape) is not list or not all(type(n) is int and n >= 0 for n in shape)
                or not hasattr(torch, dtype)):
            raise BadState(f"a raw tensor's dtype or shape {dtype!r} {shape!r} is not one this module writes")
        dtype = getattr(torch, dtype)
        count = 1
        for n in shape:
            count *= n
        if count * dtype.itemsize != size:
            raise BadState(f"a raw tensor of shape {shape} and {dtype} does not take {size} bytes")
        data = self._section([start, size])
        if not size:
            return torch.empty(shape, dtype=dtype)
        # a writable copy of its own: the tensor neither aliases the file's bytes nor keeps them alive
        return torch.frombuffer(bytearray(data), dtype=torch.uint8).view(dtype).reshape(shape)

    def tree(self, node: Any) -> Any:
        if node is None or type(node) in (bool, int, float, str):
            return node
        if type(node) is list:
            return [self.tree(v) for v in node]
        if type(node) is not dict or len(node) != 1:
            raise BadState(f"unknown node {str(node)[:80]}")
        (tag, value), = node.items()
        if tag == "tuple":
            return tuple(self.tree(v) for v in value)
        if tag in ("dict", "odict"):
            pairs = ((self._key(k), self.tree(v)) for k, v in value)
            return dict(pairs) if tag == "dict" else OrderedDict(pairs)
        if tag == "bytes":
            return base64.b64decode(value, validate=True)
        if tag == "tensor":
            return self.tensors[value]
        if tag == "raw":
            return self._raw(self.raw[value])
        if tag in ("array", "scalar"):
            import numpy

            array = numpy.load(io.BytesIO(self._section(self.arrays[value])), allow_pickle=False)
            return array[()] if tag == "scalar" else array
        raise BadState(f"unknown tag {tag!r}")

    def _key(self, node: Any) -> Any:
        key = self.tree(node)
        hash(key)  # a list key is malformed (TypeError), not a crash later
        return key
