from __future__ import annotations

import math

import numpy as np
import pytest

from engine.errors import ModelMismatch
from engine.iris.matcher import IrisMatcher, MatchParams, default_n_typical
from engine.iris.synthetic_codes import impostor_gallery, mated_set
from engine.types import ModelRef

from .conftest import reference_similarity, template

RNG = np.random.default_rng(7)
CODE = RNG.integers(0, 256, size=256, dtype=np.uint8)
FULL = np.full(256, 255, dtype=np.uint8)


def test_identical_codes_give_distance_zero_at_shift_zero() -> None:
    r = IrisMatcher().match(template(CODE, FULL, 256), template(CODE, FULL, 256))
    assert (r.hd_raw, r.shift, r.bits_compared, r.reason) == (0.0, 0, 2048, None)
    assert r.similarity == 1.0
    assert default_n_typical(2048) == 911.0


@pytest.mark.parametrize(("columns", "shift"), [(256, 3), (256, -15), (128, 7), (64, -2)])
def test_rotation_is_found_at_its_shift(columns: int, shift: int) -> None:
    bpc = 256 // columns
    rotated = np.roll(CODE, shift * bpc)
    r = IrisMatcher().match(template(CODE, FULL, columns), template(rotated, FULL, columns))
    assert r.shift == shift
    assert r.hd_raw == 0.0


def test_rotation_beyond_the_range_is_not_found() -> None:
    r = IrisMatcher(MatchParams(max_shift=2)).match(template(CODE, FULL, 256),
                                                     template(np.roll(CODE, 5), FULL, 256))
    assert r.hd_raw > 0.3


def test_masked_bits_are_ignored() -> None:
    mask = FULL.copy()
    mask[:64] = 0  # reference says: first quarter unusable
    other = CODE.copy()
    other[:64] ^= 0xFF  # ... and that is exactly where it differs
    r = IrisMatcher(MatchParams(max_shift=0)).match(template(CODE, FULL, 256), template(other, mask, 256))
    assert r.hd_raw == 0.0
    assert r.bits_compared == 192 * 8
    unmasked = IrisMatcher(MatchParams(max_shift=0)).match(template(CODE, FULL, 256),
                                                            template(other, FULL, 256))
    assert unmasked.hd_raw == pytest.approx(0.25)


def test_complement_gives_distance_one() -> None:
    r = IrisMatcher(MatchParams(max_shift=0)).match(template(CODE, FULL, 256), template(~CODE, FULL, 256))
    assert r.hd_raw == 1.0
    assert r.similarity == 0.0


def test_no_overlap_is_defined() -> None:
    a = np.zeros(256, np.uint8)
    a[::2] = 255
    b = np.zeros(256, np.uint8)
    b[1::2] = 255  # every shift by one column swaps the pattern: still disjoint at even shifts
    r = IrisMatcher(MatchParams(max_shift=0)).match(template(CODE, a, 256), template(CODE, b, 256))
    assert r.similarity == 0.0 and r.reason == "NO_OVERLAP" and r.bits_compared == 0
    assert math.isnan(r.hd_raw) and math.isnan(r.hd_norm)
    empty = IrisMatcher().match(template(CODE, np.zeros(256, np.uint8), 256), template(CODE, FULL, 256))
    assert empty.reason == "NO_OVERLAP"


def test_daugman_normalisation() -> None:
    # 911 bits compared (= n_typical): HD_norm = HD_raw. Fewer bits pull towards 0.5.
    mask = np.zeros(256, np.uint8)
    mask[:113] = 255
    mask[113] = 0b11111110  # 113 * 8 + 7 = 911 bits
    other = CODE.copy()
    other[:25] ^= 0xFF  # 200 differing bits
    m = IrisMatcher(MatchParams(max_shift=0))
    r = m.match(template(CODE, mask, 256), template(other, FULL, 256))
    assert r.bits_compared == 911
    assert r.hd_norm == pytest.approx(r.hd_raw) and r.hd_raw == pytest.approx(200 / 911)
    half = IrisMatcher(MatchParams(max_shift=0, n_typical=4 * 911)).match(
        template(CODE, mask, 256), template(other, FULL, 256))
    assert half.hd_norm == pytest.approx(0.5 - (0.5 - 200 / 911) * 0.5)
    assert half.similarity == pytest.approx(1 - half.hd_norm)


def test_other_model_or_geometry_is_refused() -> None:
    m = IrisMatcher()
    with pytest.raises(ModelMismatch):
        m.match(template(CODE, FULL, 256), template(CODE, FULL, 256, ModelRef("other", "1")))
    with pytest.raises(ModelMismatch):
        m.match(template(CODE, FULL, 256), template(CODE, FULL, 128))
    with pytest.raises(ModelMismatch):
        m.match(template(CODE, FULL, 256), template(CODE[:128], FULL[:128], 128))


def test_matches_slow_reference_and_separates_synthetic_mates() -> None:
    enr, prb = mated_set(30, seed=3)
    imp_c, imp_m = impostor_gallery(30, seed=4)
    m = IrisMatcher()
    genuine, impostor = [], []
    for i in range(30):
        g = m.match(template(prb.codes[i], prb.masks[i], 256), template(enr.codes[i], enr.masks[i], 256))
        assert g.shift == enr.rotation[i] - prb.rotation[i]
        assert g.similarity == pytest.approx(
            reference_similarity(prb.codes[i], prb.masks[i], enr.codes[i], enr.masks[i], 256, 15, 911.0),
            abs=1e-9)
        genuine.append(g.similarity)
        impostor.append(m.similarity(template(prb.codes[i], prb.masks[i], 256),
                                     template(imp_c[i], imp_m[i], 256)))
    assert min(genuine) > max(impostor)
    assert 0.4 < float(np.median(impostor)) < 0.65
