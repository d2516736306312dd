"""The two dlib networks, hard-coded, and the reader that checks a ``.dat`` file against them.

A dlib ``.dat`` file stores the layers' weights but not the wiring (which tag an ``add_prev`` or a
``skip`` refers to): that lives in the C++ type. The definitions below transcribe the C++ types of
``anet_type`` (``tools/python/src/face_recognition.cpp``) and of the mmod face detector
(``tools/python/src/cnn_face_detector.cpp``) as forward-ordered op lists; ``read_network`` walks the
file against the list record by record and raises ``ConfigurationError`` at the first difference.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.errors import ConfigurationError
from engine.models.dlib_format import DlibReader, LayerRecord, read_layer_record, read_layer_trailer

__all__ = ["DETECTOR_DEF", "RECOGNIZER_DEF", "Op", "ParsedNet", "read_network"]

COMPUTE = frozenset({"con", "affine", "relu", "max_pool", "avg_pool", "add_prev", "fc"})


@dataclass(frozen=True)
class Op:
    """One wrapper of the C++ type. ``arg``: con -> (filters, kernel, stride); pools -> (kernel, stride,
    0 = whole input); tag/skip/add_prev -> (tag id,); fc -> (outputs,)."""

    kind: str
    arg: tuple[int, ...] = ()


def _ares(n: int) -> list[Op]:
    return [Op("tag", (1,)), Op("con", (n, 3, 1)), Op("affine"), Op("relu"), Op("con", (n, 3, 1)),
            Op("affine"), Op("add_prev", (1,)), Op("relu")]


def _ares_down(n: int) -> list[Op]:
    return [Op("tag", (1,)), Op("con", (n, 3, 2)), Op("affine"), Op("relu"), Op("con", (n, 3, 1)),
            Op("affine"), Op("tag", (2,)), Op("skip", (1,)), Op("avg_pool", (2, 2)), Op("add_prev", (2,)),
            Op("relu")]


def _recognizer() -> tuple[Op, ...]:
    ops = [Op("con", (32, 7, 2)), Op("affine"), Op("relu"), Op("max_pool", (3, 2))]
    ops += _ares(32) * 3
    ops += _ares_down(64) + _ares(64) * 3
    ops += _ares_down(128) + _ares(128) * 2
    ops += _ares_down(256) + _ares(256) * 2
    ops += _ares_down(256)
    ops += [Op("avg_pool", (0, 0)), Op("fc", (128,))]
    return tuple(ops)


def _detector() -> tuple[Op, ...]:
    ops: list[Op] = []
    for n in (16, 32, 32):
        ops += [Op("con", (n, 5, 2)), Op("affine"), Op("relu")]
    for _ in range(3):
        ops += [Op("con", (45, 5, 1)), Op("affine"), Op("relu")]
    ops.append(Op("con", (1, 9, 1)))
    return tuple(ops)


RECOGNIZER_DEF = _recognizer()
DETECTOR_DEF = _detector()


@dataclass
class ParsedNet:
    """A network read from a file: ``layers[i]`` is the record of ``definition[i]`` (None for
    tag/skip); ``input`` and ``loss`` hold the input and loss layers' fields."""

    definition: tuple[Op, ...]
    layers: list[LayerRecord | None]
    input: dict[str, Any] = field(default_factory=dict)
    loss: dict[str, Any] = field(default_factory=dict)


def _read_input(r: DlibReader) -> dict[str, Any]:
    name = r.string()
    out: dict[str, Any] = {"name": name, "mean": [r.float_(), r.float_(), r.float_()]}
    if name == "input_rgb_image_sized":
        out["nr"], out["nc"] = r.int_(), r.int_()
    elif name == "input_rgb_image_pyramid2":
        out["pyramid_padding"], out["pyramid_outer_padding"] = r.int_(), r.int_()
    elif name not in ("input_rgb_image", "input_rgb_image_pyramid"):
        raise r.fail(f"unsupported input layer {name!r}")
    return out


def _read_loss(r: DlibReader) -> dict[str, Any]:
    name = r.string()
    if name == "loss_metric_2":
        return {"name": name, "margin": r.float_(), "dist_thresh": r.float_()}
    if name == "loss_metric_":
        return {"name": name}
    if name != "loss_mmod_":
        raise r.fail(f"unsupported loss layer {name!r}")
    version = r.int_()
    if not 1 <= version <= 4:
        raise r.fail(f"unsupported mmod_options version {version}")
    windows: list[tuple[int, int]] = []
    if version == 1:
        windows.append((r.int_(), r.int_()))
    else:
        for _ in range(r.int_()):
            wver = r.int_()
            w, h = r.int_(), r.int_()
            if wver == 2:
                r.string()
            windows.append((w, h))
    out: dict[str, Any] = {"name": name, "windows": windows}
    for key in ("loss_per_false_alarm", "loss_per_missed_target", "truth_match_iou_threshold",
                "nms_iou", "nms_percent_covered", "ignore_iou", "ignore_percent_covered"):
        out[key] = r.float_()
    if version >= 3:
        out["assume_image_pyramid"] = r.byte()
    if version >= 4:
        out["use_bbr"] = r.bool_()
        out["bbr_lambda"] = r.float_()
    return out


def _check(op: Op, rec: LayerRecord, r: DlibReader, index: int) -> None:
    bad = f"layer {index}: file has {rec.name}, the network definition expects {op.kind}{op.arg}"
    if rec.kind != op.kind:
        raise r.fail(bad)
    if op.kind == "con":
        n, k, s = op.arg
        got = (rec.ints["num_filters"], rec.ints["nr"], rec.ints["nc"], rec.ints["stride_y"],
               rec.ints["stride_x"])
        if got != (n, k, k, s, s):
            raise r.fail(f"{bad}; found filters/kernel/stride {got}")
    elif op.kind in ("max_pool", "avg_pool"):
        k, s = op.arg
        pool = (rec.ints["nr"], rec.ints["nc"], rec.ints["stride_y"], rec.ints["stride_x"])
        if pool != (k, k, s, s) and not (k == 0 and pool[:2] == (0, 0)):
            raise r.fail(f"{bad}; found kernel/stride {pool}")
    elif op.kind == "fc" and rec.ints["num_outputs"] != op.arg[0]:
        raise r.fail(f"{bad}; found {rec.ints['num_outputs']} outputs")


def read_network(path: Path, definition: tuple[Op, ...]) -> ParsedNet:
    """Parse a dlib DNN file against ``definition``; raises ``ConfigurationError`` on any mismatch."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigurationError(f"cannot read model source {path}: {exc}") from exc
    r = DlibReader(data, path.name)
    r.expect_int(1, "add_loss_layer version")
    loss = _read_loss(r)
    # Wrapper versions, outermost first: that is the definition reversed, innermost op excluded.
    versions: list[int] = []
    for op in reversed(definition[1:]):
        v = r.int_()
        expect = (2,) if op.kind in COMPUTE else (1,)
        if v not in expect:
            raise r.fail(f"wrapper for {op.kind}{op.arg}: version {v}, expected {expect[0]} "
                         f"(the file's network differs from the definition)")
        versions.append(v)
    versions.reverse()
    v0 = r.int_()
    if v0 not in (2, 3):
        raise r.fail(f"innermost add_layer version {v0} not supported")
    net_input = _read_input(r)
    layers: list[LayerRecord | None] = []
    for i, op in enumerate(definition):
        if op.kind not in COMPUTE:
            layers.append(None)
            continue
        rec = read_layer_record(r)
        _check(op, rec, r, i)
        read_layer_trailer(r, v0 if i == 0 else versions[i - 1], innermost=i == 0)
        layers.append(rec)
    if not r.at_end():
        raise r.fail(f"{len(r.data) - r.pos} unexpected trailing bytes")
    return ParsedNet(definition, layers, net_input, loss)
