"""PNG plots of the error curves (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # before pyplot is imported: no display on servers
import matplotlib.pyplot as plt
import numpy as np

from engine.metrics import ErrorCurve

__all__ = ["plot_curves"]


def plot_curves(
    curves: Mapping[str, ErrorCurve], path: Path, *, xlabel: str, ylabel: str, title: str
) -> Path:
    """One log-log curve per entry (false-positive rate on x, false-negative rate on y); zero rates are
    drawn at the smallest measurable rate 1/n of their class."""
    fig, ax = plt.subplots(figsize=(6, 5))
    drawn = 0
    for name, curve in curves.items():
        c = curve.thinned(3000)
        if c.n_negative == 0 or c.n_positive == 0:
            continue  # a rate without denominator cannot be drawn
        x = np.maximum(c.false_positive, 1.0 / c.n_negative)
        y = np.maximum(c.false_negative, 1.0 / c.n_positive)
        ax.step(x, y, where="post", label=f"{name} (mated {c.n_positive}, non-mated {c.n_negative})")
        drawn += 1
    if drawn:
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, "no curve: no mated or no non-mated attempts", ha="center", va="center")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
