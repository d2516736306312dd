"""Parsing of LFW pairs files and manifests (errors are InvalidInput with the line at fault)."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.errors import InvalidInput
from engine.evaluation.manifest import read_manifest
from engine.evaluation.pairs import read_pairs


def test_pairs_folds_and_same_flags(tmp_path: Path) -> None:
    p = tmp_path / "pairs.txt"
    p.write_text("2\t1\nA\t1\t2\nA\t1\tB\t3\nC\t2\t4\nC\t1\tD\t1\n")
    pairs = read_pairs(p)
    assert [(x.fold, x.same) for x in pairs] == [(0, True), (0, False), (1, True), (1, False)]
    assert (pairs[1].name2, pairs[1].index2) == ("B", 3)


BAD_PAIRS = ["", "2\n", "1\t1\nA\t1\n", "1\t1\nA\t1\t2\n", "1\t1\nA\tx\t2\nB\t1\tC\t1\n"]


@pytest.mark.parametrize("text", BAD_PAIRS)
def test_malformed_pairs_files(tmp_path: Path, text: str) -> None:
    p = tmp_path / "pairs.txt"
    p.write_text(text)
    with pytest.raises(InvalidInput):
        read_pairs(p)


def test_manifest_subjects_sides_and_filters(tmp_path: Path) -> None:
    m = tmp_path / "m.csv"
    m.write_text("identity,modality,path\np,iris_left,a.png\np,iris_right,b.png\nq,face,c.jpg\n")
    samples = read_manifest(m)
    assert [s.subject for s in samples] == ["p/iris_left", "p/iris_right", "q"]
    assert [s.kind for s in samples] == ["iris", "iris", "face"]
    assert samples[0].path == (tmp_path / "a.png").resolve()
    assert [s.modality for s in read_manifest(m, "iris")] == ["iris_left", "iris_right"]
    assert [s.modality for s in read_manifest(m, "iris_right")] == ["iris_right"]
    assert [s.subject for s in read_manifest(m, "iris", limit=1)] == ["p/iris_left"]
    with pytest.raises(InvalidInput, match="no samples"):
        read_manifest(_empty(tmp_path))
    with pytest.raises(InvalidInput, match="columns"):
        read_manifest(_write(tmp_path / "bad.csv", "name,path\nx,y\n"))


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _empty(tmp_path: Path) -> Path:
    return _write(tmp_path / "empty.csv", "identity,modality,path\n")
