"""End-to-end behaviour of the iris pipeline on synthetic eyes (no real data needed)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from engine.iris.extractor import IrisExtractor
from engine.iris.matcher import IrisMatcher
from engine.iris.synthetic import Capture, SyntheticEyes, render
from engine.types import IrisTemplate, template_from_bytes

MATCHER = IrisMatcher()


def _template(ex: IrisExtractor, img: np.ndarray) -> IrisTemplate:
    t = ex.extract(img).template
    assert isinstance(t, IrisTemplate)
    return t


def test_generator_is_deterministic(eyes: SyntheticEyes) -> None:
    assert np.array_equal(eyes.capture(3, 1), eyes.capture(3, 1))
    assert not np.array_equal(eyes.capture(3, 1), eyes.capture(3, 2))
    assert not np.array_equal(eyes.capture(3, 1), eyes.capture(4, 1))


def test_template_format(iris_extractor: IrisExtractor, eyes: SyntheticEyes) -> None:
    ex = iris_extractor.extract(eyes.capture(0, 0))
    t = ex.template
    assert isinstance(t, IrisTemplate)
    assert t.code.size == 256 and t.columns == 256 and t.bytes_per_column == 1
    assert t.model == iris_extractor.model and t.model.model_id == "nasname-iris-gabor"
    assert 0.4 < ex.quality.measures["usable_fraction"] < 1.0
    back = template_from_bytes(t.to_bytes())
    assert isinstance(back, IrisTemplate) and np.array_equal(back.code, t.code)
    assert set(ex.details["stage_ms"]) == {"decode", "segment", "normalize", "encode", "quality"}


def test_same_identity_matches_and_different_do_not(iris_extractor: IrisExtractor,
                                                    eyes: SyntheticEyes) -> None:
    ids, caps = range(6), range(3)
    temps = {(i, k): _template(iris_extractor, eyes.capture(i, k)) for i in ids for k in caps}
    genuine = [MATCHER.similarity(temps[i, a], temps[i, b]) for i in ids for a in caps for b in caps if a < b]
    impostor = [MATCHER.similarity(temps[i, 0], temps[j, 1]) for i in ids for j in ids if i != j]
    # different eyes: HD near 0.5 (a little below after the best of 31 shifts)
    assert max(impostor) < 0.68, impostor
    assert abs(float(np.mean(impostor)) - 0.57) < 0.05
    # every genuine pair above every impostor pair (one capture has the lid over the pupil's top,
    # the hardest case here), and genuine pairs typically far above
    assert min(genuine) > max(impostor) + 0.03, (genuine, impostor)
    assert float(np.median(genuine)) > 0.9


@pytest.mark.parametrize("columns", [-9, 6])
def test_rotation_is_recovered_as_a_column_shift(iris_extractor: IrisExtractor, columns: int) -> None:
    base = Capture(rotation_deg=0.0, reflections=0)
    turned = replace(base, rotation_deg=columns * 360.0 / 256)
    a = _template(iris_extractor, render(11, base))
    b = _template(iris_extractor, render(11, turned))
    m = MATCHER.match(b, a)
    assert m.similarity > 0.8
    assert abs(abs(m.shift) - abs(columns)) <= 1
    # the sign convention: turning the eye by +k columns rolls the code by +k columns
    rolled = IrisTemplate(np.roll(a.code, columns), np.roll(a.mask, columns), a.columns, a.model)
    assert MATCHER.match(b, rolled).shift in (-1, 0, 1)


def test_occlusion_is_masked(iris_extractor: IrisExtractor) -> None:
    open_eye = replace(Capture(), upper_lid=0.0, lower_lid=0.0, lashes=0)
    closed = replace(open_eye, upper_lid=0.4)
    q_open = iris_extractor.extract(render(5, open_eye)).quality
    t_closed = iris_extractor.extract(render(5, closed))
    drop = q_open.measures["usable_fraction"] - t_closed.quality.measures["usable_fraction"]
    assert drop > 0.15
    # the masked bits are the upper ones: angles around 270 degrees (image up) lose most
    mask = np.unpackbits(t_closed.template.mask).reshape(256, 8).mean(axis=1)
    top = mask[int(256 * 0.7) : int(256 * 0.8)].mean()
    bottom = mask[int(256 * 0.2) : int(256 * 0.3)].mean()
    assert top < 0.3 < bottom
    # and the occluded capture still matches its open-eye capture
    sim = MATCHER.similarity(t_closed.template, _template(iris_extractor, render(5, open_eye)))
    assert sim > 0.75


def test_extractor_protocol_and_all_pairs_scoring(iris_extractor: IrisExtractor, eyes: SyntheticEyes) -> None:
    from engine.extractor import Extractor
    from engine.iris.dataset_eval import score_all_pairs

    assert isinstance(iris_extractor, Extractor) and iris_extractor.kind == "iris"
    temps = [_template(iris_extractor, eyes.capture(i, k)) for i in range(3) for k in range(2)]
    ids = [str(i) for i in range(3) for _ in range(2)]
    gen, imp = score_all_pairs(temps, ids)
    ref = [MATCHER.similarity(temps[a], temps[b]) for a in range(6) for b in range(a + 1, 6)]
    same = [ids[a] == ids[b] for a in range(6) for b in range(a + 1, 6)]
    assert gen.size == 3 and imp.size == 12
    assert np.allclose(np.sort(gen), np.sort([r for r, s in zip(ref, same, strict=True) if s]), atol=1e-5)
    assert np.allclose(np.sort(imp), np.sort([r for r, s in zip(ref, same, strict=True) if not s]), atol=1e-5)
