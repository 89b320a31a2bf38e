"""The real ``recon`` command: ``recon enhance``, ``recon reconstruct --method pnp-* --denoiser``,
the trust fields of learned and enhanced outputs, and every bad input.

Denoiser folders are written by ``recon.train.save_model`` from the registered RED-CNN denoiser:
with zero weights it is the identity; with the last bias set it adds a constant (a structure the
data do not hold, which the trust report must flag).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import h5py
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from physics.mri import MultiCoilMRI
from recon.admm import admm
from recon.cli import main
from recon.fista import fista
from recon.io import open_raw
from recon.pipeline import ReconOptions, coil_maps
from recon.train import save_calibration, save_model
from recon.unrolled import build_model
from tests.conftest import rngs

TRUST = {"trust/residual", "trust/expected_residual", "trust/sigma", "trust/measured",
         "trust/suspicious", "trust/departure"}


def denoiser(folder: Path, complex_images: bool, *, offset: float = 0.0, layers: int = 2) -> Path:
    """A RED-CNN denoiser folder: zero weights (the identity) plus ``offset`` on the last bias, which
    adds ``offset`` standard deviations of the image to every pixel."""
    config = {"model": "redcnn", "complex_images": complex_images, "features": 4, "layers": layers}
    model = build_model(config, rngs())
    nnx.update(model, jax.tree.map(jnp.zeros_like, nnx.state(model, nnx.Param)))
    bias = model.net.decoder[-1].bias
    bias[...] = bias[...].at[0].set(offset)
    save_model(model, config, folder)
    return folder


def fields(path: Path) -> dict:
    with h5py.File(path) as f:
        names = set()
        f.visit(lambda name: names.add(name) if isinstance(f[name], h5py.Dataset) else None)
        return {"names": names, "attrs": dict(f.attrs), **{n: f[n][()] for n in names}}


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("enhance-cli")
    assert main(["simulate", "-o", str(d / "full.h5"), "--coils", "4", "--size", "32", "--slices", "2",
                 "--snr-db", "30", "--seed", "1"]) == 0
    assert main(["undersample", str(d / "full.h5"), "-o", str(d / "r3.h5"), "--acceleration", "3",
                 "--center-fraction", "0.16"]) == 0
    assert main(["simulate-ct", "-o", str(d / "ct.h5"), "--size", "32", "--angles", "48", "--dose", "1e3",
                 "--seed", "2"]) == 0
    denoiser(d / "identity-complex", True)
    denoiser(d / "identity-real", False)
    denoiser(d / "offset-complex", True, offset=1.0)
    denoiser(d / "offset-real", False, offset=1.0)
    return d


def test_enhance_raw_mri_end_to_end(folder, capsys):
    """Enhanced images, the zero-filled input and the trust fields; with data consistency a
    hallucinating enhancer is brought back to the data, without it it is flagged."""
    out = folder / "enhanced.h5"
    assert main(["enhance", str(folder / "r3.h5"), "--model", str(folder / "offset-complex"), "-o",
                 str(out)]) == 0
    assert "enhanced mri-raw (2, 32, 32)" in capsys.readouterr().out
    f = fields(out)
    assert f["names"] == {"reconstruction", "classical"} | TRUST
    assert f["reconstruction"].shape == f["classical"].shape == (2, 32, 32)
    assert f["attrs"]["method"] == "enhance" and f["attrs"]["data_consistency"] == "exact"  # no calibration
    assert json.loads(f["attrs"]["model"])["model"] == "redcnn"
    with open_raw(folder / "r3.h5") as raw:
        sigma = raw.attrs["noise_sigma"]
    np.testing.assert_allclose(f["trust/sigma"], sigma, rtol=1e-6)
    assert not f["trust/suspicious"].any()
    assert main(["enhance", str(folder / "r3.h5"), "--model", str(folder / "offset-complex"), "-o",
                 str(folder / "raw.h5"), "--data-consistency", "none"]) == 0
    g = fields(folder / "raw.h5")
    assert g["trust/suspicious"].all() and g["attrs"]["trust_suspicious_slices"] == "[0, 1]"
    assert np.all(g["trust/residual"] > 3 * g["trust/expected_residual"])
    np.testing.assert_array_equal(g["classical"], f["classical"])
    # a model of recon train has a calibration: the default is then the noise-weighted consistency
    calibrated = shutil.copytree(folder / "offset-complex", folder / "offset-calibrated")
    save_calibration(calibrated, 0.3, examples=8, split="validation")
    assert main(["enhance", str(folder / "r3.h5"), "--model", str(calibrated), "-o",
                 str(folder / "noise.h5")]) == 0
    h = fields(folder / "noise.h5")
    assert h["attrs"]["data_consistency"] == "noise" and h["attrs"]["relative_error"] == 0.3
    assert np.all(f["trust/residual"] < h["trust/residual"])
    assert np.all(h["trust/residual"] < g["trust/residual"])


def test_enhance_ct_and_image_files(folder):
    """CT raw data: FBP enhanced, trusted by the identity, a constant offset flagged; image files
    (a recon reconstruct output): enhanced slice by slice, the departure map the only trust field."""
    assert main(["enhance", str(folder / "ct.h5"), "--model", str(folder / "identity-real"), "-o",
                 str(folder / "ct-id.h5")]) == 0
    f = fields(folder / "ct-id.h5")
    assert f["names"] == {"reconstruction", "classical"} | TRUST
    np.testing.assert_allclose(f["reconstruction"], f["classical"], rtol=1e-4, atol=1e-6)
    assert not f["trust/suspicious"].any() and f["attrs"]["units"] == "mm^-1"
    assert main(["enhance", str(folder / "ct.h5"), "--model", str(folder / "offset-real"), "-o",
                 str(folder / "ct-off.h5")]) == 0
    assert fields(folder / "ct-off.h5")["trust/suspicious"].all()
    assert main(["reconstruct", str(folder / "r3.h5"), "-o", str(folder / "zf.h5"), "--method",
                 "zero-filled"]) == 0
    assert main(["enhance", str(folder / "zf.h5"), "--model", str(folder / "identity-complex"), "-o",
                 str(folder / "zf-id.h5")]) == 0
    f, zf = fields(folder / "zf-id.h5"), fields(folder / "zf.h5")
    assert f["names"] == {"reconstruction", "trust/departure"} and "trust_data" in f["attrs"]
    np.testing.assert_allclose(f["reconstruction"], zf["reconstruction"], rtol=1e-4, atol=1e-6)
    assert main(["enhance", str(folder / "zf.h5"), "--model", str(folder / "offset-real"), "-o",
                 str(folder / "zf-off.h5")]) == 0
    d = fields(folder / "zf-off.h5")["trust/departure"]
    assert d.shape == (2, 32, 32) and d.min() > 0.1
    with h5py.File(folder / "ct.h5") as f, h5py.File(folder / "image.h5", "w") as g:  # a CT image file
        g["image"], g.attrs["pixel_size_mm"] = f["image"][()], 0.5
    assert main(["enhance", str(folder / "image.h5"), "--model", str(folder / "identity-real"), "-o",
                 str(folder / "image-id.h5")]) == 0
    f = fields(folder / "image-id.h5")
    assert f["attrs"]["units"] == "mm^-1" and f["attrs"]["pixel_size_mm"] == 0.5
    with h5py.File(folder / "ct.h5") as g:
        np.testing.assert_allclose(f["reconstruction"], g["image"][()], rtol=1e-4, atol=1e-6)


def test_pnp_with_an_identity_denoiser_is_the_plain_solver(folder):
    raw = folder / "r3.h5"
    assert main(["reconstruct", str(raw), "-o", str(folder / "pnp-admm.h5"), "--method", "pnp-admm",
                 "--denoiser", str(folder / "identity-complex"), "--iterations", "8"]) == 0
    assert main(["reconstruct", str(raw), "-o", str(folder / "pnp-fista.h5"), "--method", "pnp-fista",
                 "--denoiser", str(folder / "identity-real"), "--iterations", "8", "--step", "0.9"]) == 0
    admm_out, fista_out = fields(folder / "pnp-admm.h5"), fields(folder / "pnp-fista.h5")
    assert admm_out["names"] == fista_out["names"] == {"reconstruction"} | TRUST
    params = json.loads(admm_out["attrs"]["parameters"])
    assert params["rho"] == 0.05 and params["iterations"] == 8 and params["model"]["model"] == "redcnn"
    with open_raw(raw) as f:
        for i in range(f.num_slices):
            y, mask = jnp.asarray(f.kspace(i) * f.mask(i)), f.mask(i)
            A = MultiCoilMRI(coil_maps(np.asarray(y), mask, ReconOptions()), jnp.asarray(mask, jnp.float32))
            b = A.adjoint(y)
            x, _ = admm(A.normal, b, lambda v: v, lambda v: v, lambda v, t: v, b, rho=0.05, maxiter=8,
                        cg_iterations=5)
            scale = float(jnp.abs(x).max())
            np.testing.assert_allclose(admm_out["reconstruction"][i], np.abs(x), atol=1e-4 * scale)
            x, _ = fista(lambda v: A.normal(v) - b, lambda v, t, key: v, b, step=0.9, maxiter=8)
            np.testing.assert_allclose(fista_out["reconstruction"][i], np.abs(x), atol=1e-4 * scale)
    assert main(["reconstruct", str(folder / "ct.h5"), "-o", str(folder / "pnp-ct.h5"), "--method",
                 "pnp-admm", "--denoiser", str(folder / "identity-real"), "--iterations", "3"]) == 0
    f = fields(folder / "pnp-ct.h5")
    assert f["names"] == {"reconstruction"} | TRUST and f["reconstruction"].shape == (1, 32, 32)


def test_learned_reconstruction_writes_the_trust_report(folder):
    """The shipped E2E-VarNet (trained at 96 x 96) on these 32 x 32 slices: the trust fields are
    written, and the report says what the image quality says: it does not fit the data."""
    assert main(["reconstruct", str(folder / "r3.h5"), "-o", str(folder / "e2e.h5"), "--method",
                 "e2e-varnet"]) == 0
    f = fields(folder / "e2e.h5")
    assert f["names"] == {"reconstruction"} | TRUST and f["trust/departure"].shape == (2, 32, 32)
    assert f["trust/suspicious"].all()


def _expect_error(capsys, argv, pattern, tmp_path):
    before = sorted(p.name for p in tmp_path.iterdir())
    assert main(argv) == 2, argv
    err = capsys.readouterr().err.strip()
    assert err.startswith("recon: error:") and "\n" not in err and "Traceback" not in err, err
    assert pattern in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing partial left behind


def test_bad_inputs_give_one_line_and_status_2(folder, tmp_path, capsys):
    raw, ct, out = str(folder / "r3.h5"), str(folder / "ct.h5"), str(tmp_path / "out.h5")
    modl = {"model": "modl", "cascades": 1, "features": 4, "depth": 2, "cg_iterations": 3}
    save_model(build_model(modl, rngs()), modl, tmp_path / "modl")
    deep = denoiser(tmp_path / "deep", False, layers=8)  # needs images of 33 pixels or more
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["something"] = np.ones(3)
    assert main(["simulate", "-o", str(tmp_path / "radial.h5"), "--trajectory", "radial", "--size", "32",
                 "--coils", "2", "--spokes", "8"]) == 0
    identity = str(folder / "identity-real")
    broken = shutil.copytree(folder / "identity-complex", tmp_path / "broken-calibration")
    (broken / "calibration.json").write_text('{"relative_error": -1}')
    cases = [
        (["enhance", raw, "--model", str(broken), "-o", out], "calibration.json"),
        (["enhance", raw, "--model", identity, "-o", out, "--data-consistency", "noise"], "relative error"),
        (["enhance", raw, "--model", str(tmp_path / "none"), "-o", out], "config.json"),
        (["enhance", raw, "--model", str(tmp_path / "modl"), "-o", out], "not an image denoiser"),
        (["enhance", raw, "--model", str(deep), "-o", out], "takes no images of shape (32, 32)"),
        (["enhance", ct, "--model", str(folder / "identity-complex"), "-o", out], "complex"),
        (["enhance", str(tmp_path / "other.h5"), "--model", identity, "-o", out], "no dataset 'sinogram'"),
        (["enhance", str(tmp_path / "radial.h5"), "--model", identity, "-o", out], "non-Cartesian"),
        (["enhance", str(tmp_path / "missing.h5"), "--model", identity, "-o", out], "does not exist"),
        (["enhance", raw, "--model", identity, "-o", raw], "input"),
        (["reconstruct", raw, "-o", out, "--method", "pnp-admm"], "needs --denoiser"),
        (["reconstruct", ct, "-o", out, "--method", "pnp-fista"], "needs --denoiser"),
        (["reconstruct", raw, "-o", out, "--method", "sense", "--denoiser", identity], "--denoiser"),
        (["reconstruct", raw, "-o", out, "--method", "pnp-fista", "--denoiser", identity, "--rho", "1"],
         "--rho does not apply"),
        (["reconstruct", raw, "-o", out, "--method", "pnp-admm", "--denoiser", str(tmp_path / "modl")],
         "not an image denoiser"),
        (["reconstruct", raw, "-o", out, "--method", "pnp-admm", "--denoiser", identity, "--rho", "-1"],
         "rho"),
        (["reconstruct", ct, "-o", out, "--method", "pnp-admm", "--denoiser",
          str(folder / "identity-complex")], "complex"),
        (["reconstruct", str(tmp_path / "radial.h5"), "-o", out, "--method", "pnp-admm", "--denoiser",
          identity], "Cartesian"),
    ]
    for argv, pattern in cases:
        _expect_error(capsys, argv, pattern, tmp_path)
