"""Ray-sharded gallery (engine.cluster) on a real local Ray cluster of 2 CPUs: the same answers as a
single-node gallery (incl. partition and id-list restrictions), a shard killed during searches gives
UNAVAILABLE (never a silently incomplete answer) and is restarted from the store, writes reach a
restarted shard, and sharded snapshots reopen."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from engine.config import ClusterConfig, EngineConfig
from engine.errors import ConfigurationError, Unavailable
from engine.gallery import Gallery
from engine.types import Modality
from tests.unit.store.conftest import face, iris

ray = pytest.importorskip("ray", reason="the [cluster] extra (ray) is not installed")

N = 120
K = 8


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[None]:
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def _config(tmp: Path, backend: str) -> EngineConfig:
    return EngineConfig(data_dir=tmp / backend, snapshot_every=0, modalities=("face", "iris_left"),
                        cluster=ClusterConfig(backend=backend, shards=2, shard_cpus=0.5, timeout_s=20))


def _fill(g: Gallery) -> None:
    for i in range(N):
        slots: dict[Modality, Any] = {Modality.FACE: face(i, d=32)}
        if i % 3:
            slots[Modality.IRIS_LEFT] = iris(1000 + i, nbytes=64, columns=16)
        g.insert(slots, ref_id=f"r{i}", partition="a" if i % 2 else "b")
    for i in range(0, N, 10):
        g.delete(f"r{i}")


@pytest.fixture(scope="module")
def galleries(ray_cluster: None, tmp_path_factory: pytest.TempPathFactory
              ) -> Iterator[tuple[Gallery, Gallery]]:
    tmp = tmp_path_factory.mktemp("cluster")
    local, sharded = Gallery.open(_config(tmp, "local")), Gallery.open(_config(tmp, "ray"))
    _fill(local)
    _fill(sharded)
    yield local, sharded
    sharded.close()
    local.close()


def _probes(modality: Modality) -> list[Any]:
    if modality is Modality.FACE:
        return [face(i, d=32) for i in (3, 7, 500)]
    return [iris(1000 + i, nbytes=64, columns=16) for i in (4, 8, 999)]


def _same(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray]) -> None:
    """Equal scores, and equal labels wherever a score is not tied (ties may break either way, also
    at the cut: the k-th score shared with a result just outside the list)."""
    np.testing.assert_allclose(a[0], b[0], rtol=1e-5, atol=1e-6)
    for da, la, lb in zip(a[0], a[1], b[1], strict=True):
        for j in range(da.size):
            tied = np.isclose(da, da[j], rtol=1e-5, atol=1e-6)
            if np.isfinite(da[j]) and tied.sum() == 1 and not tied[-1]:
                assert la[j] == lb[j]
            elif not np.isfinite(da[j]):
                assert la[j] == lb[j] == -1


def _search_all(g: Gallery) -> list[tuple[np.ndarray, np.ndarray]]:
    out = []
    for modality in (Modality.FACE, Modality.IRIS_LEFT):
        probes = _probes(modality)
        out.append(g.search_labels(modality, probes, K))
        out.append(g.search_labels(modality, probes, K, partition="a"))
        out.append(g.search_labels(modality, probes, K, ref_ids=[f"r{i}" for i in (1, 2, 5, 9, 11, 33)]))
        out.append(g.search_labels(modality, probes, K, partition="b", ref_ids=["r2", "r4", "r5"]))
    return out


def _shards(g: Gallery) -> Any:
    index = g._indexes[Modality.FACE]
    return index.pool  # type: ignore[attr-defined]


def _healthy(g: Gallery, timeout: float = 60.0) -> None:
    pool = _shards(g)
    deadline = time.monotonic() + timeout
    while pool._reloading and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not pool._reloading


def test_sharded_equals_single_node(galleries: tuple[Gallery, Gallery]) -> None:
    local, sharded = galleries
    assert type(sharded._indexes[Modality.FACE]).__name__ == "ShardedIndex"
    for a, b in zip(_search_all(local), _search_all(sharded), strict=True):
        _same(a, b)
    for ids in (["r1"], ["r3", "r5"]):  # id lists owned by one shard only
        _same(local.search_labels(Modality.FACE, _probes(Modality.FACE), K, ref_ids=ids),
              sharded.search_labels(Modality.FACE, _probes(Modality.FACE), K, ref_ids=ids))
    assert len(sharded.score(Modality.FACE, face(3, d=32), np.zeros(0, dtype=np.int64))) == 0
    labels = np.arange(1, N + 5, dtype=np.int64)
    np.testing.assert_array_equal(local.score(Modality.FACE, face(3, d=32), labels),
                                  sharded.score(Modality.FACE, face(3, d=32), labels))
    assert len(sharded._indexes[Modality.FACE]) == local.count()


def test_killed_shard_gives_unavailable_never_partial(galleries: tuple[Gallery, Gallery]) -> None:
    local, sharded = galleries
    want = local.search_labels(Modality.FACE, _probes(Modality.FACE), K)
    pool = _shards(sharded)
    outcomes: list[str] = []
    stop = threading.Event()

    def searcher() -> None:
        while not stop.is_set():
            try:
                got = sharded.search_labels(Modality.FACE, _probes(Modality.FACE), K)
            except Unavailable as exc:
                assert exc.reason == "SHARD_UNAVAILABLE"
                outcomes.append("unavailable")
                continue
            _same(want, got)  # a complete answer or none
            outcomes.append("ok")

    t = threading.Thread(target=searcher)
    t.start()
    time.sleep(0.5)
    restarts = pool.restarts
    pool.kill(1)
    deadline = time.monotonic() + 60
    while pool.restarts == restarts and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(0.5)
    stop.set()
    t.join()
    assert pool.restarts == restarts + 1  # restarted and reloaded from the store
    assert "unavailable" in outcomes and outcomes[-1] == "ok"
    for a, b in zip(_search_all(local), _search_all(sharded), strict=True):
        _same(a, b)


def test_write_to_dead_shard_restarts_it(galleries: tuple[Gallery, Gallery]) -> None:
    local, sharded = galleries
    _healthy(sharded)
    pool = _shards(sharded)
    victim = sharded.get("r13", with_templates=False).label
    pool.kill(int(victim) % pool.shards)
    for g in (local, sharded):
        g.delete("r13")
        g.insert({Modality.FACE: face(7, d=32)}, ref_id="r-new", partition="a")
    for a, b in zip(_search_all(local), _search_all(sharded), strict=True):
        _same(a, b)


@pytest.mark.slow
def test_sharded_snapshot_reopens(ray_cluster: None, tmp_path: Path, caplog: pytest.LogCaptureFixture
                                  ) -> None:
    config = _config(tmp_path, "ray")
    g = Gallery.open(config)
    _fill(g)
    before = _search_all(g)
    g.close()  # snapshot_on_close: each shard's slice into one file
    with caplog.at_level(logging.INFO, logger="engine.gallery"):
        g = Gallery.open(config)
    assert "gallery open (loaded snapshot)" in caplog.text  # not rebuilt from the store
    try:
        for a, b in zip(before, _search_all(g), strict=True):
            _same(a, b)
    finally:
        g.close()


def test_cluster_config_section(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    toml = tmp_path / "nasname.toml"
    toml.write_text('[engine]\nthreads = 3\n[cluster]\nbackend = "ray"\nshards = 4\n')
    monkeypatch.setenv("NASNAME_CLUSTER_ADDRESS", "auto")
    config = EngineConfig.load(toml)
    assert config.threads == 3
    assert config.cluster == ClusterConfig(backend="ray", address="auto", shards=4)
    assert EngineConfig().cluster.backend == "local"  # the default needs no Ray
    with pytest.raises(ConfigurationError):
        ClusterConfig(backend="spark")
