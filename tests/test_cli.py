"""The real ``recon`` command: end to end in a subprocess, and every bad input."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from recon.cli import main


def run(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "recon.cli", *args], capture_output=True, text=True,
                          timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"recon {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}")
    return proc


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory) -> Path:
    """simulate -> undersample -> reconstruct (zero-filled, sense), as a user would."""
    d = tmp_path_factory.mktemp("cli")
    run("simulate", "-o", str(d / "full.h5"), "--coils", "8", "--size", "64", "--slices", "2",
        "--snr-db", "35", "--seed", "1")
    run("undersample", str(d / "full.h5"), "-o", str(d / "r3.h5"), "--pattern", "equispaced",
        "--acceleration", "3", "--center-fraction", "0.16", "--seed", "0")
    for method in ("zero-filled", "sense", "l1-wavelet", "tv", "admm-tv"):
        run("reconstruct", str(d / "r3.h5"), "-o", str(d / f"{method}.h5"), "--method", method)
    return d


def test_simulate_writes_fastmri_layout(pipeline):
    with h5py.File(pipeline / "full.h5") as f:
        assert f["kspace"].shape == (2, 8, 64, 64) and f["kspace"].dtype == np.complex64
        assert f["reconstruction_rss"].shape == (2, 64, 64)
        assert f.attrs["snr_db"] == 35


def test_undersample_writes_mask(pipeline):
    with h5py.File(pipeline / "r3.h5") as f:
        mask = f["mask"][()]
        assert mask.shape == (64,) and 2.5 < mask.size / mask.sum() < 3.5
        assert not np.any(f["kspace"][()][..., ~mask])
        assert f.attrs["pattern"] == "equispaced"


def test_reconstruct_and_evaluate(pipeline):
    scores = {}
    for method in ("zero-filled", "sense", "l1-wavelet", "tv", "admm-tv"):
        with h5py.File(pipeline / f"{method}.h5") as f:
            assert f["reconstruction"].shape == (2, 64, 64) and f["reconstruction"].dtype == np.float32
            assert f.attrs["method"] == method
        out = run("evaluate", str(pipeline / f"{method}.h5"), "--reference", str(pipeline / "full.h5"), "--json")
        scores[method] = json.loads(out.stdout)
    assert scores["sense"]["psnr"] > scores["zero-filled"]["psnr"] + 1.5
    assert scores["sense"]["ssim"] > scores["zero-filled"]["ssim"]
    for method in ("l1-wavelet", "tv", "admm-tv"):
        assert scores[method]["psnr"] > scores["sense"]["psnr"], scores


def test_reconstruct_options_and_noise_prewhitening(pipeline, tmp_path, data_dir):
    with h5py.File(tmp_path / "noise.h5", "w") as f:  # a noise scan matching the 8 simulated coils
        rng = np.random.default_rng(0)
        f["noise"] = (rng.standard_normal((8, 500)) + 1j * rng.standard_normal((8, 500))).astype(np.complex64)
    assert main(["reconstruct", str(pipeline / "r3.h5"), "-o", str(tmp_path / "o.h5"), "--maps", "acs",
                 "--iterations", "5", "--lambda", "0.01", "--calib", "64x8",
                 "--noise", str(tmp_path / "noise.h5")]) == 0
    with h5py.File(tmp_path / "o.h5") as f:
        assert json.loads(f.attrs["parameters"])["iterations"] == 5 and f.attrs["prewhitened"]
    # the real 16-channel noise scan does not match 8 coils: a clear error
    assert main(["reconstruct", str(pipeline / "r3.h5"), "-o", str(tmp_path / "p.h5"),
                 "--noise", str(data_dir / "noise_16ch_real.h5")]) == 2
    assert not (tmp_path / "p.h5").exists()


def test_every_subcommand_has_help():
    for cmd in ("simulate", "undersample", "reconstruct", "evaluate", "demo"):
        proc = run(cmd, "--help")
        assert "usage: recon " + cmd in proc.stdout


def _expect_error(capsys, argv, pattern, tmp_path):
    before = sorted(p.name for p in tmp_path.iterdir())
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("recon: error:") and "\n" not in err and "Traceback" not in err
    assert pattern in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing partial left behind


def _raw(path: Path, **datasets) -> Path:
    with h5py.File(path, "w") as f:
        for name, value in datasets.items():
            f[name] = value
    return path


def test_bad_inputs_give_one_line_and_status_2(pipeline, tmp_path, capsys):
    good = pipeline / "r3.h5"
    out = str(tmp_path / "out.h5")
    k = np.ones((1, 2, 8, 8), np.complex64)
    (tmp_path / "text.h5").write_text("not hdf5")
    nan = k.copy()
    nan[0, 0, 3, 3] = np.nan
    cases = [
        (["reconstruct", str(tmp_path / "missing.h5"), "-o", out], "does not exist"),
        (["reconstruct", str(tmp_path / "text.h5"), "-o", out], "not an HDF5 file"),
        (["reconstruct", str(_raw(tmp_path / "nok.h5", other=k)), "-o", out], "kspace"),
        (["reconstruct", str(_raw(tmp_path / "rank.h5", kspace=k[0, 0])), "-o", out], "shape"),
        (["reconstruct", str(_raw(tmp_path / "mask.h5", kspace=k, mask=np.ones(7, bool))), "-o", out], "mask"),
        (["reconstruct", str(_raw(tmp_path / "nan.h5", kspace=nan)), "-o", out], "NaN"),
        (["reconstruct", str(_raw(tmp_path / "zero.h5", kspace=np.ones((0, 2, 8, 8), np.complex64))), "-o", out],
         "no slices"),
        (["reconstruct", str(good), "-o", str(tmp_path / "no-such-dir" / "o.h5")], "o.h5"),
        (["reconstruct", str(good), "-o", str(good)], "input"),
        (["evaluate", str(good), "--reference", str(pipeline / "full.h5")], "reconstruction"),
        (["undersample", str(good), "-o", out, "--acceleration", "0.5"], "acceleration"),
    ]
    with h5py.File(tmp_path / "target.h5", "w") as f:
        f["x"] = 1
    with h5py.File(tmp_path / "link.h5", "w") as f:
        f["kspace"] = h5py.ExternalLink("target.h5", "x")
    cases.append((["reconstruct", str(tmp_path / "link.h5"), "-o", out], "external link"))
    for argv, pattern in cases:
        _expect_error(capsys, argv, pattern, tmp_path)


def test_input_file_is_never_modified(pipeline, tmp_path):
    src = tmp_path / "in.h5"
    shutil.copy(pipeline / "r3.h5", src)
    before = src.read_bytes()
    assert main(["reconstruct", str(src), "-o", str(tmp_path / "o.h5"), "--method", "zero-filled"]) == 0
    assert src.read_bytes() == before


def test_reconstruct_reads_ismrmrd(tmp_path, rng):
    """An ISMRMRD file and the same k-space in fastMRI layout give the same reconstruction."""
    from recon.io import write_kspace
    from tests.test_io import acquisition, ismrmrd_header, write_ismrmrd

    k = (rng.standard_normal((1, 4, 16, 20)) + 1j * rng.standard_normal((1, 4, 16, 20))).astype(np.complex64)
    xml = ismrmrd_header(20, 16, 1, (0, 15, 8))
    write_ismrmrd(tmp_path / "raw.h5", xml, [acquisition(k[0, :, y], step=y, slc=0, centre=10) for y in range(16)])
    write_kspace(tmp_path / "fastmri.h5", k)
    for name in ("raw", "fastmri"):
        assert main(["reconstruct", str(tmp_path / f"{name}.h5"), "-o", str(tmp_path / f"{name}-zf.h5"),
                     "--method", "zero-filled"]) == 0
    with h5py.File(tmp_path / "raw-zf.h5") as a, h5py.File(tmp_path / "fastmri-zf.h5") as b:
        np.testing.assert_allclose(a["reconstruction"][()], b["reconstruction"][()], rtol=1e-6)


def test_radial_simulate_reconstruct_evaluate(tmp_path):
    """``recon simulate --trajectory radial`` writes the non-Cartesian layout that ``reconstruct`` reads."""
    raw = tmp_path / "radial.h5"
    run("simulate", "-o", str(raw), "--trajectory", "radial", "--spokes", "40", "--size", "64",
        "--coils", "4", "--seed", "2")
    with h5py.File(raw) as f:
        assert f["kspace"].shape == (1, 4, 40, 128) and f["trajectory"].shape == (40, 128, 2)
        assert tuple(f.attrs["image_shape"]) == (64, 64)
    psnr = {}
    for method in ("zero-filled", "tv"):
        run("reconstruct", str(raw), "-o", str(tmp_path / f"{method}.h5"), "--method", method)
        out = run("evaluate", str(tmp_path / f"{method}.h5"), "--reference", str(raw), "--json")
        psnr[method] = json.loads(out.stdout)["psnr"]
    assert psnr["tv"] > psnr["zero-filled"] + 3, psnr
    bad = tmp_path / "bad.h5"
    with h5py.File(raw) as f, h5py.File(bad, "w") as g:
        g["kspace"] = f["kspace"][()]
        g["trajectory"] = f["trajectory"][()] * 2  # out of [-N/2, N/2)
        g.attrs["image_shape"] = [64, 64]
    assert main(["reconstruct", str(bad), "-o", str(tmp_path / "x.h5")]) == 2
    assert not (tmp_path / "x.h5").exists()
