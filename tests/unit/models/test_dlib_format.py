"""dlib serialisation primitives and the record-by-record check of the real .dat files."""

from __future__ import annotations

import struct
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from engine.errors import ConfigurationError
from engine.models.dlib_format import DlibReader
from engine.models.dlib_models import source_path
from engine.models.dlib_nets import DETECTOR_DEF, RECOGNIZER_DEF, Op, read_network


@pytest.mark.parametrize(("raw", "value"), [
    (b"\x01\x00", 0), (b"\x01\x01", 1), (b"\x01\x02", 2), (b"\x01\x96", 150), (b"\x02\x00\x01", 256),
    (b"\x81\x04", -4), (b"\x02\x80\x12", 4736),
])
def test_int_encoding(raw: bytes, value: int) -> None:
    r = DlibReader(raw)
    assert r.int_() == value and r.at_end()


@pytest.mark.parametrize(("raw", "value"), [
    (b"\x01\x10\x81\x04", 1.0), (b"\x01\x00\x01\x0b", 0.0), (b"\x01\x10\x81\x05", 0.5),
    (b"\x81\x03\x01\x00", -3.0),
])
def test_float_encoding_is_mantissa_then_exponent(raw: bytes, value: float) -> None:
    assert DlibReader(raw).float_() == value


def test_special_floats_and_bools() -> None:
    assert DlibReader(b"\x01\x01\x02\x00\x7d").float_() == float("inf")  # exponent 32000
    assert DlibReader(b"10").bool_() is True


@pytest.mark.parametrize("raw", [b"\x31\x00", b"\x09" + b"\x00" * 9, b"\x02\x01", b""])
def test_malformed_int_fails_loudly(raw: bytes) -> None:
    with pytest.raises(ConfigurationError):
        DlibReader(raw, "x.dat").int_()


def test_tensor_is_ieee_float32_nchw() -> None:
    data = np.arange(6, dtype="<f4")
    raw = b"\x01\x02" + b"\x01\x01\x01\x02\x01\x03\x01\x01" + data.tobytes()
    t = DlibReader(raw).tensor()
    assert t.shape == (1, 2, 3, 1) and np.array_equal(t.ravel(), data)


def test_float_matrix_uses_dlib_floats() -> None:
    one = b"\x01\x10\x81\x04"
    raw = b"\x81\x02\x81\x01" + one + struct.pack("4s", b"\x01\x00\x01\x0b")
    m = DlibReader(raw).float_matrix()
    assert m.shape == (2, 1) and m.ravel().tolist() == [1.0, 0.0]


def test_recognizer_file_matches_the_definition() -> None:
    net = read_network(source_path("dlib_resnet_v1"), RECOGNIZER_DEF)
    kinds = [rec.kind for rec in net.layers if rec is not None]
    assert kinds.count("con") == 29 and kinds.count("add_prev") == 14 and kinds.count("avg_pool") == 5
    assert net.input["nr"] == 150 and net.loss["name"] == "loss_metric_2"
    floats = sum(p.size for rec in net.layers if rec for k, p in rec.params.items()
                 if not (rec.kind == "fc" and k == "bias"))
    assert floats == 5_614_592
    assert np.allclose(net.input["mean"], [122.782, 117.001, 104.298], atol=1e-4)


def test_detector_file_matches_the_definition() -> None:
    net = read_network(source_path("dlib_mmod"), DETECTOR_DEF)
    assert net.loss["windows"] == [(80, 80)]
    assert abs(net.loss["nms_iou"] - 0.338) < 1e-3


def test_a_different_definition_is_refused() -> None:
    changed = list(RECOGNIZER_DEF)
    changed[0] = replace(changed[0], arg=(64, 7, 2))  # 64 filters instead of 32
    with pytest.raises(ConfigurationError, match="expects con"):
        read_network(source_path("dlib_resnet_v1"), tuple(changed))
    with pytest.raises(ConfigurationError):
        read_network(source_path("dlib_mmod"), (*DETECTOR_DEF[:-1], Op("relu"), DETECTOR_DEF[-1]))


def test_truncated_or_padded_file_is_refused(tmp_path: Path) -> None:
    data = source_path("dlib_mmod").read_bytes()
    cut = tmp_path / "cut.dat"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ConfigurationError, match="end of file"):
        read_network(cut, DETECTOR_DEF)
    extra = tmp_path / "extra.dat"
    extra.write_bytes(data + b"\x00")
    with pytest.raises(ConfigurationError, match="trailing"):
        read_network(extra, DETECTOR_DEF)
