"""Reader for dlib's serialisation format (``dlib/serialize.h``, ``float_details.h``, ``dnn/*.h``).

Pure Python + numpy, no dlib. Only what the three face model files use is implemented, and every
record is checked as it is read: a file that does not match the expected layout raises
``ConfigurationError`` naming the byte offset, never a half-loaded model.

Primitives (all little-endian):
    INT     control byte C (low nibble = byte count 1..8, 0x80 = negative, 0x70 must be 0) + |v|
    FLOAT   INT mantissa, INT exponent; value = mantissa * 2**exponent (32000..32002 = inf/-inf/nan)
    STRING  INT length + raw bytes
    TENSOR  INT version 2, INT n, k, nr, nc, then n*k*nr*nc IEEE float32 (NCHW)
    ALIAS   INT version 1, INT n, k, nr, nc (a shape, no data)
    MATRIX  INT -nr, INT -nc, then nr*nc elements row-major (floats as FLOAT, not IEEE)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from engine.errors import ConfigurationError

__all__ = ["DlibReader", "LayerRecord", "read_layer_record"]

F32 = npt.NDArray[np.float32]


class DlibReader:
    """Sequential reader over the bytes of one dlib file."""

    def __init__(self, data: bytes, name: str = "<bytes>") -> None:
        self.data = memoryview(data)
        self.pos = 0
        self.name = name

    def fail(self, what: str) -> ConfigurationError:
        return ConfigurationError(f"{self.name}: {what} (at byte {self.pos})", reason="MODEL_FORMAT")

    def at_end(self) -> bool:
        return self.pos >= len(self.data)

    def byte(self) -> int:
        if self.pos >= len(self.data):
            raise self.fail("unexpected end of file")
        b = self.data[self.pos]
        self.pos += 1
        return int(b)

    def raw(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise self.fail(f"unexpected end of file reading {n} bytes")
        out = bytes(self.data[self.pos : self.pos + n])
        self.pos += n
        return out

    def int_(self) -> int:
        c = self.byte()
        if c & 0x70:
            raise self.fail(f"bad integer control byte 0x{c:02x}")
        n = c & 0x0F
        if not 1 <= n <= 8:
            raise self.fail(f"bad integer size {n}")
        v = int.from_bytes(self.raw(n), "little")
        return -v if c & 0x80 else v

    def expect_int(self, value: int, what: str) -> None:
        start = self.pos
        got = self.int_()
        if got != value:
            self.pos = start
            raise self.fail(f"{what}: expected {value}, found {got}")

    def float_(self) -> float:
        c = self.data[self.pos] if self.pos < len(self.data) else 0
        if c & 0x70:
            raise self.fail("legacy ASCII float encoding is not supported")
        mantissa = self.int_()
        exponent = self.int_()
        if exponent == 32000:
            return math.inf
        if exponent == 32001:
            return -math.inf
        if exponent == 32002:
            return math.nan
        return math.ldexp(float(mantissa), exponent) if mantissa else 0.0

    def bool_(self) -> bool:
        b = self.byte()
        if b not in (0x30, 0x31):
            raise self.fail(f"bad bool byte 0x{b:02x}")
        return b == 0x31

    def string(self) -> str:
        n = self.int_()
        try:
            return self.raw(n).decode("ascii")
        except UnicodeDecodeError as exc:
            raise self.fail("non-ASCII string") from exc

    def tensor(self) -> F32:
        """A ``resizable_tensor``: returns a float32 array of shape (n, k, nr, nc)."""
        self.expect_int(2, "tensor version")
        shape = tuple(self.int_() for _ in range(4))
        if any(d < 0 for d in shape):
            raise self.fail(f"negative tensor shape {shape}")
        count = math.prod(shape)
        data = np.frombuffer(self.raw(4 * count), dtype="<f4").astype(np.float32)
        return data.reshape(shape)

    def alias(self) -> tuple[int, int, int, int]:
        self.expect_int(1, "alias_tensor version")
        n, k, nr, nc = (self.int_() for _ in range(4))
        return n, k, nr, nc

    def float_matrix(self) -> npt.NDArray[np.float64]:
        """A ``dlib::matrix<float>`` (elements in the FLOAT encoding), shape (nr, nc)."""
        nr, nc = self.int_(), self.int_()
        nr, nc = abs(nr), abs(nc)  # new format writes them negated; the meaning is the same
        vals = [self.float_() for _ in range(nr * nc)]
        return np.asarray(vals, dtype=np.float64).reshape(nr, nc)


@dataclass
class LayerRecord:
    """One computational layer as stored. ``params`` are the layer's weights in dlib's layout."""

    kind: str  # con, affine, bn, relu, max_pool, avg_pool, add_prev, fc
    name: str  # the record's type string, e.g. "con_5"
    params: dict[str, F32] = field(default_factory=dict)
    ints: dict[str, int] = field(default_factory=dict)


def _multipliers(r: DlibReader) -> None:
    for _ in range(4):  # lr_mult, wd_mult, bias_lr_mult, bias_wd_mult: training only
        r.float_()


def _con(r: DlibReader, name: str) -> LayerRecord:
    params = r.tensor().ravel()
    num_filters, nr, nc, sy, sx, py, px = (r.int_() for _ in range(7))
    fshape, bshape = r.alias(), r.alias()
    _multipliers(r)
    use_bias = True
    if name in ("con_5", "con_6"):
        use_bias = r.bool_()
    if name == "con_6" and r.bool_():
        raise r.fail("fused conv+relu (use_relu) is not supported")
    nw = math.prod(fshape)
    if fshape != (num_filters, fshape[1], nr, nc) or params.size != nw + (num_filters if use_bias else 0):
        raise r.fail(f"{name}: parameter size {params.size} does not match filters {fshape}")
    if bshape != (1, num_filters, 1, 1):
        raise r.fail(f"{name}: bias alias {bshape} does not match {num_filters} filters")
    w = params[:nw].reshape(fshape)
    b = params[nw:] if use_bias else np.zeros(num_filters, np.float32)
    return LayerRecord("con", name, {"weight": w, "bias": b},
                       {"num_filters": num_filters, "nr": nr, "nc": nc, "stride_y": sy, "stride_x": sx,
                        "pad_y": py, "pad_x": px, "in_channels": fshape[1]})


def _affine(r: DlibReader, name: str) -> LayerRecord:
    params = r.tensor().ravel()
    g, b = r.alias(), r.alias()
    mode = r.int_()
    if name == "affine_2" and r.bool_():
        raise r.fail("disabled affine layer is not supported")
    n = math.prod(g)
    if params.size != 2 * n or math.prod(b) != n:
        raise r.fail(f"{name}: parameter size {params.size} does not match gamma {g}")
    if mode != 0:
        raise r.fail(f"{name}: only per-channel (CONV) affine layers are supported, found mode {mode}")
    return LayerRecord("affine", name, {"gamma": params[:n].copy(), "beta": params[n:].copy()},
                       {"channels": n})


def _bn(r: DlibReader, name: str) -> LayerRecord:
    params = r.tensor().ravel()
    g, _b = r.alias(), r.alias()
    r.tensor()  # batch means (training only)
    r.tensor()  # batch invstds (training only)
    running_means = r.tensor().ravel()
    running_vars = r.tensor().ravel()
    r.int_()  # num_updates
    r.int_()  # running_stats_window_size
    _multipliers(r)
    eps = r.float_()
    n = math.prod(g)
    if params.size != 2 * n or running_means.size != n or running_vars.size != n:
        raise r.fail(f"{name}: batch-norm sizes do not match {n} channels")
    # What dlib does when a bn_ record is loaded into an affine_ slot (test mode).
    gamma = (params[:n].astype(np.float64) / np.sqrt(running_vars.astype(np.float64) + eps))
    beta = params[n:].astype(np.float64) - gamma * running_means.astype(np.float64)
    return LayerRecord("affine", name, {"gamma": gamma.astype(np.float32), "beta": beta.astype(np.float32)},
                       {"channels": n})


def _pool(r: DlibReader, name: str) -> LayerRecord:
    nr, nc, sy, sx, py, px = (r.int_() for _ in range(6))
    kind = "max_pool" if name.startswith("max") else "avg_pool"
    return LayerRecord(kind, name, {}, {"nr": nr, "nc": nc, "stride_y": sy, "stride_x": sx,
                                        "pad_y": py, "pad_x": px})


def _fc(r: DlibReader, name: str) -> LayerRecord:
    num_outputs, num_inputs = r.int_(), r.int_()
    params = r.tensor().ravel()
    r.alias()
    r.alias()
    bias_mode = r.int_()
    _multipliers(r)
    if name == "fc_3":
        r.bool_()
    has_bias = bias_mode == 0
    expect = num_inputs * num_outputs + (num_outputs if has_bias else 0)
    if params.size != expect:
        raise r.fail(f"{name}: {params.size} parameters, expected {expect}")
    w = params[: num_inputs * num_outputs].reshape(num_inputs, num_outputs)
    b = params[num_inputs * num_outputs :] if has_bias else np.zeros(num_outputs, np.float32)
    return LayerRecord("fc", name, {"weight": w, "bias": b},
                       {"num_outputs": num_outputs, "num_inputs": num_inputs, "has_bias": int(has_bias)})


def read_layer_record(r: DlibReader) -> LayerRecord:
    """One computational layer's record (the string name and the layer's own fields)."""
    name = r.string()
    if name in ("con_4", "con_5", "con_6"):
        return _con(r, name)
    if name in ("affine_", "affine_2"):
        return _affine(r, name)
    if name in ("bn_con2", "bn_fc2"):
        return _bn(r, name)
    if name in ("relu_", "relu_2"):
        if name == "relu_2" and r.bool_():
            raise r.fail("disabled relu layer is not supported")
        return LayerRecord("relu", name)
    if name in ("max_pool_2", "avg_pool_2"):
        return _pool(r, name)
    if name == "add_prev_":
        return LayerRecord("add_prev", name)
    if name in ("fc_2", "fc_3"):
        return _fc(r, name)
    raise r.fail(f"unsupported layer type {name!r}")


def read_layer_trailer(r: DlibReader, version: int, innermost: bool) -> None:
    """The bookkeeping an ``add_layer`` writes after its layer: 3 bools and (empty) tensors."""
    for _ in range(3):
        r.bool_()
    r.tensor()  # x_grad
    r.tensor()  # cached_output
    if innermost or version >= 2:
        r.tensor()  # grad_final (innermost) / params_grad
    if innermost and version >= 3:
        r.int_()  # sample_expansion_factor
