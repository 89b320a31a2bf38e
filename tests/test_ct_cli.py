"""The real ``recon`` command on CT data: simulate-ct -> reconstruct -> evaluate, and bad input."""

from __future__ import annotations

import json
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


def scores(recon: Path, reference: Path) -> dict:
    return json.loads(run("evaluate", str(recon), "--reference", str(reference), "--json").stdout)


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("ct-cli")


@pytest.mark.parametrize("geometry, extra", [
    ("parallel", ()), ("fan", ()), ("fan", ("--arc",)), ("cone", ("--size", "32", "--angles", "90")),
])
def test_simulate_reconstruct_evaluate(folder, geometry, extra):
    name = f"{geometry}{''.join(extra).replace('-', '')}"
    sim = folder / f"{name}.h5"
    args = ["--size", "64", "--angles", "180", *extra] if geometry != "cone" else list(extra)
    run("simulate-ct", "-o", str(sim), "--geometry", geometry, *args)
    with h5py.File(sim) as f:
        assert f.attrs["geometry"] == geometry and f["sinogram"].dtype == np.float32
        assert "counts" not in f  # noiseless without --dose
    run("reconstruct", str(sim), "-o", str(folder / f"{name}-fbp.h5"))
    with h5py.File(folder / f"{name}-fbp.h5") as f:
        assert f.attrs["method"] == "fbp"
        assert f["reconstruction"].shape == ((32, 32, 32) if geometry == "cone" else (1, 64, 64))
    s = scores(folder / f"{name}-fbp.h5", sim)
    assert s["psnr"] > (18 if geometry == "cone" else 21), s


def test_low_dose_tv_beats_fbp(folder):
    sim = folder / "low.h5"
    run("simulate-ct", "-o", str(sim), "--geometry", "fan", "--phantom", "anatomical", "--size", "96",
        "--angles", "240", "--dose", "2e3", "--seed", "3")
    with h5py.File(sim) as f:
        assert f.attrs["I0"] == 2e3 and f["counts"].shape == f["sinogram"].shape
    for method in ("fbp", "sirt", "tv"):
        run("reconstruct", str(sim), "-o", str(folder / f"low-{method}.h5"), "--method", method)
    fbp, sirt, tv = (scores(folder / f"low-{m}.h5", sim) for m in ("fbp", "sirt", "tv"))
    assert tv["psnr"] > fbp["psnr"] + 2 and sirt["psnr"] > fbp["psnr"], (fbp, sirt, tv)


def test_simulate_from_a_real_ct_image(folder, data_dir):
    """The real head slice (mm^-1, 0.49 mm pixels) through the whole pipeline."""
    sim = folder / "head.h5"
    run("simulate-ct", "-o", str(sim), "--image", str(data_dir / "head_ct_693.h5"), "--geometry",
        "parallel", "--angles", "360")
    with h5py.File(sim) as f, h5py.File(data_dir / "head_ct_693.h5") as g:
        assert f.attrs["pixel_size_mm"] == pytest.approx(g.attrs["pixel_size_mm"])
        np.testing.assert_array_equal(f["image"][()], g["image"][()])
    run("reconstruct", str(sim), "-o", str(folder / "head-fbp.h5"), "--filter", "hann")
    assert scores(folder / "head-fbp.h5", sim)["psnr"] > 28


def test_bad_input_is_one_line_and_exit_2(folder, tmp_path, capsys):
    sim = folder / "parallel.h5"
    if not sim.exists():
        run("simulate-ct", "-o", str(sim), "--size", "32", "--angles", "30")
    assert main(["reconstruct", str(sim), "-o", str(tmp_path / "x.h5"), "--method", "sense"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("recon: error:") and "CT file" in err and err.count("\n") == 1
    bad = tmp_path / "bad.h5"
    with h5py.File(sim) as f, h5py.File(bad, "w") as g:
        g["sinogram"] = f["sinogram"][()]
        g["angles"] = f["angles"][()]
        for k, v in f.attrs.items():
            if k != "pixel_size_mm":
                g.attrs[k] = v
    assert main(["reconstruct", str(bad), "-o", str(tmp_path / "y.h5")]) == 2
    assert "pixel_size_mm" in capsys.readouterr().err
    assert main(["simulate-ct", "-o", str(tmp_path / "z.h5"), "--image", str(bad)]) == 2
    assert "no dataset 'image'" in capsys.readouterr().err
    assert not (tmp_path / "x.h5").exists() and not (tmp_path / "y.h5").exists()
