"""``nasname bench``: speed of the engine's components against baselines, on synthetic galleries.

Layout (ann-benchmarks style): ``grids`` declares what runs (data), ``contenders`` wraps each search
method behind one interface, ``synthetic`` makes galleries with planted mates, ``runner`` records raw
observations, ``analysis`` derives the figures, ``report`` prints/plots/writes Markdown, ``cli`` is
the command.
"""

from __future__ import annotations

from engine.bench.cli import main

__all__ = ["main"]
