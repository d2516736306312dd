from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from engine.calibration import load_distributions, save_distributions
from engine.errors import InvalidInput
from engine.fusion import Fusion, ModalityCalibration, per_comparison_fmr
from engine.types import Modality, ModelRef

FACE = ModelRef("test-face", "1")
IRIS = ModelRef("test-iris", "1")


@pytest.fixture(scope="module")
def fusion(tmp_path_factory: pytest.TempPathFactory) -> Fusion:
    d = tmp_path_factory.mktemp("cal")
    rng = np.random.default_rng(7)
    save_distributions(FACE, "face", rng.normal(0.8, 0.08, 5000), rng.normal(0.3, 0.1, 1_000_000),
                       source="synthetic normal", command="test", directory=d)
    save_distributions(IRIS, "iris", rng.normal(0.75, 0.06, 5000), rng.normal(0.53, 0.018, 1_000_000),
                       source="synthetic normal", command="test", directory=d)
    return Fusion.for_models({Modality.FACE: FACE, Modality.IRIS_LEFT: IRIS, Modality.IRIS_RIGHT: IRIS}, d)


def test_calibration_file_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    g, i = rng.normal(0.8, 0.1, 300), rng.normal(0.2, 0.1, 3000)
    save_distributions(FACE, "face", g, i, source="s", command="c", directory=tmp_path)
    dist = load_distributions(FACE, tmp_path)
    assert dist is not None
    assert dist.n_genuine == 300 and dist.n_impostor == 3000
    assert dist.impostor_tail[0] == pytest.approx(i.max(), abs=1e-6)
    assert load_distributions(ModelRef("absent", "0"), tmp_path) is None


@pytest.mark.parametrize("fmr", [1e-2, 1e-4, 1e-6])
def test_single_modality_threshold_matches_true_impostor_tail(fusion: Fusion, fmr: float) -> None:
    # Impostors are N(0.3, 0.1): the similarity at the threshold must have that true tail probability,
    # up to a decade beyond the 1e6 measured impostors. Further out a Gaussian is no model of a score
    # bounded at 1.0 (it puts mass above it); the bounded truths of test_fusion_tails.py go to 1e-12.
    cal = fusion.calibration(Modality.FACE)
    t = fusion.threshold([Modality.FACE], fmr)
    score = float(np.interp(t, cal.llr, cal.grid))
    true_fmr = stats.norm.sf(score, 0.3, 0.1)
    assert fmr / 2.5 <= true_fmr <= fmr * 2.5


def test_llr_is_monotone_and_signed(fusion: Fusion) -> None:
    for m in (Modality.FACE, Modality.IRIS_LEFT):
        cal = fusion.calibration(m)
        assert np.all(np.diff(cal.llr) >= 0)
    fused_gen, _ = fusion.fuse({Modality.FACE: 0.8, Modality.IRIS_LEFT: 0.75})
    fused_imp, _ = fusion.fuse({Modality.FACE: 0.3, Modality.IRIS_LEFT: 0.53})
    assert fused_gen > 10 > -10 > fused_imp


def test_fused_threshold_controls_impostor_rate_by_simulation(fusion: Fusion) -> None:
    rng = np.random.default_rng(3)
    n = 2_000_000
    face = rng.normal(0.3, 0.1, n)
    iris = rng.normal(0.53, 0.018, n)
    cal_face, cal_iris = fusion.calibration(Modality.FACE), fusion.calibration(Modality.IRIS_LEFT)
    fused = cal_face.llr_of(face) + cal_iris.llr_of(iris)
    for fmr in (1e-3, 1e-4):  # 2e6 trials: 200 expected exceedances at 1e-4
        t = fusion.threshold([Modality.FACE, Modality.IRIS_LEFT], fmr)
        observed = float(np.mean(fused >= t))
        assert fmr / 1.5 <= observed <= fmr * 1.5, (fmr, observed)


def test_more_modalities_give_more_power(fusion: Fusion) -> None:
    # A genuine pair that is only moderately similar in each modality passes fused, not singly.
    scores = {Modality.FACE: 0.62, Modality.IRIS_LEFT: 0.6, Modality.IRIS_RIGHT: 0.6}
    fmr = per_comparison_fmr(0.003, 1_000_000)
    fused, llrs = fusion.fuse(scores)
    assert fused >= fusion.threshold(scores, fmr)
    assert llrs[Modality.FACE] < fusion.threshold([Modality.FACE], fmr)


def test_per_comparison_fmr() -> None:
    assert per_comparison_fmr(0.003, 1) == pytest.approx(0.003)
    assert per_comparison_fmr(0.003, 1000) == pytest.approx(0.003 / 1000, rel=2e-3)
    with pytest.raises(InvalidInput):
        per_comparison_fmr(0.0, 10)


def test_default_calibration_is_usable_and_marked() -> None:
    cal = ModalityCalibration.default(FACE, "face")
    assert not cal.measured
    assert cal.llr_of(0.6) > 0 > cal.llr_of(0.1)
