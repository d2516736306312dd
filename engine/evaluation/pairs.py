"""LFW-style pairs files and k-fold verification accuracy.

Format (View 2): a header ``<folds><TAB><pairs per class>``, then for each fold ``n`` lines
``name i j`` (same person) followed by ``n`` lines ``name1 i name2 j`` (different people). Image
``i`` of ``name`` is ``<name>/<name>_<iiii>.jpg`` under the LFW image folder, which is looked for
next to the pairs file (``lfw/``, ``face/lfw/``, or ``../face/lfw/``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from engine.errors import InvalidInput

__all__ = ["Pair", "find_image_root", "image_path", "read_pairs"]


@dataclass(frozen=True)
class Pair:
    name1: str
    index1: int
    name2: str
    index2: int
    fold: int

    @property
    def same(self) -> bool:
        return self.name1 == self.name2


def read_pairs(path: Path) -> list[Pair]:
    try:
        lines = [ln.split() for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
    except OSError as exc:
        raise InvalidInput(f"cannot read pairs file {path}: {exc}") from exc
    if not lines or len(lines[0]) != 2:
        raise InvalidInput(f"{path}: the first line must be '<folds> <pairs per class>'")
    try:
        folds, per_class = int(lines[0][0]), int(lines[0][1])
        pairs = []
        for n, parts in enumerate(lines[1:]):
            fold = n // (2 * per_class)
            if len(parts) == 3:
                pairs.append(Pair(parts[0], int(parts[1]), parts[0], int(parts[2]), fold))
            elif len(parts) == 4:
                pairs.append(Pair(parts[0], int(parts[1]), parts[2], int(parts[3]), fold))
            else:
                raise ValueError(f"line {n + 2}: expected 3 or 4 fields")
    except ValueError as exc:
        raise InvalidInput(f"{path}: malformed pairs file: {exc}") from exc
    if len(pairs) != folds * 2 * per_class:
        raise InvalidInput(f"{path}: header announces {folds}x2x{per_class} pairs, found {len(pairs)}")
    return pairs


def image_path(root: Path, name: str, index: int) -> Path:
    return root / name / f"{name}_{index:04d}.jpg"


def find_image_root(pairs_file: Path, first: Pair) -> Path:
    here = pairs_file.resolve().parent
    for root in (here / "lfw", here / "face" / "lfw", here.parent / "face" / "lfw", here):
        if image_path(root, first.name1, first.index1).is_file():
            return root
    raise InvalidInput(f"cannot find the images of {pairs_file} (looked for lfw/<name>/ next to it)")
