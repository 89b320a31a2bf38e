"""GAN enhancers against pixel-loss training and classical reconstruction, with noise texture.

Low-dose CT: the 8 held-out thorax slices of ``experiments/gan_ldct_small`` (64 x 64, 400 mm
field of view, 96 parallel views, exact sinograms re-acquired at I0 = 2.5e3 photons per bin, seeds
never seen in training). Methods: FBP (ramp, the enhancers' input; and Hann), TV (``recon.ct.tv_ct``
on the low-dose sinogram), RED-CNN trained with the pixel loss only
(``gan_ldct_small_pixel``) and RED-CNN + least-squares GAN (``gan_ldct_small``), both the EMA
generators saved by ``recon train``; and FBP of the normal dose (I0 = 1e4), the enhancers' target.
PSNR / SSIM against the noiseless phantom. The noise power spectrum (:mod:`recon.noise_power`) of
each method is measured on its stochastic part: ``K`` noise realisations of every slice, minus their
mean (scaled by ``K / (K - 1)``); we report the noise standard deviation and the NPS-weighted mean
frequency, and plot the radial NPS normalised to unit area (``out/bench/ldct_nps.png``): a pixel
loss pushes the remaining noise to low frequencies (blotchy), the adversarial loss should keep a
texture closer to normal-dose FBP.

MRI: the held-out slices of ``experiments/gan_mri_small`` (8-coil simulated brain, 64 x 64) at 4x
and 8x, random masks with an 8 % centre (the GAN was trained at 4x; the shipped E2E-VarNet on
96-192 pixels, so 64 is outside its range): zero-filled, L1-wavelet (best lambda), E2E-VarNet,
the U-Net + GAN generator alone, after exact data consistency and after the noise-weighted one
(its relative error measured on validation slices, ``calibration.json``); and the generator as
the regulariser block of MoDL (``experiments/modl_gan_small``: fine-tuned from the GAN's weights),
beside the same MoDL trained from a random start for as many steps and the shipped DnCNN MoDL.

The experiments are trained once (a few minutes each on a 2-core CPU) into
``$RECON_BENCH_RUNS/<name>`` (default: a folder in the system temp dir) and reused.

Run: ``.venv/bin/python -m pytest benchmarks/bench_gan_quality.py --benchmark-only -s``.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from experiments.base import Experiment, calibrate, get, run
from physics.ct_geometry import CTGeometry
from recon.ct import tv_ct
from recon.data import example_rng, low_dose
from recon.fbp import fbp
from recon.learned import (MultiCoilAdapter, default_weights, load_trained, normalised_ct_operator,
                           reconstruct_learned)
from recon.metrics import evaluate
from recon.noise_power import noise_power_spectrum
from recon.pipeline import ReconOptions, reconstruct_slice
from recon.train import load_calibration
from recon.unrolled import DENOISERS

RUNS = Path(os.environ.get("RECON_BENCH_RUNS", Path(tempfile.gettempdir()) / "recon-engine-bench-runs"))
FIGURES = Path(__file__).resolve().parents[1] / "out" / "bench"
REALISATIONS = 6


def _trained(name: str | Experiment):
    """The experiment and its saved model (a GAN's EMA generator), trained into ``RUNS/name`` when
    missing (denoisers saved before calibration existed are calibrated)."""
    experiment = get(name) if isinstance(name, str) else name
    out = RUNS / experiment.name
    if not (out / "model" / "weights.msgpack").exists():
        run(experiment, out, progress=False)
    model = load_trained(out / "model")
    if isinstance(model, DENOISERS) and load_calibration(out / "model") is None:
        calibrate(experiment, model, out / "model", out / "data")
    return experiment, model


@nnx.jit
def _call(model, inputs):
    return model(**inputs)


def _magnitude(model, inputs) -> np.ndarray:
    """``|model(**inputs)|`` of a batch of one, as numpy."""
    return np.abs(np.asarray(_call(model, inputs)[0]))


def _scratch() -> Experiment:
    """``modl_gan_small`` from a random start (no pretrained block), at the GAN's learning rate."""
    e = get("modl_gan_small")
    return dataclasses.replace(e, name="modl_unet_scratch", pretrained=None,
                               train={**e.train, "learning_rate": 1e-3})


def _print(group: str, table: dict[str, dict[str, float]]) -> None:
    for name, s in table.items():
        print(f"{group} | {name}: " + "  ".join(f"{k} {v:.4g}" for k, v in s.items()))


# ------------------------------------------------------------------------------------------------
# low-dose CT
# ------------------------------------------------------------------------------------------------
def _ldct_methods(geometry: CTGeometry, pixel: object, gan: object) -> dict:
    A = normalised_ct_operator(geometry)

    def tv(sinogram):
        return tv_ct(A, jnp.asarray(sinogram) * A.factor, lam=0.002)[0]

    return {"FBP ramp (input)": lambda s, x: x,
            "FBP Hann": lambda s, x: fbp(s, geometry, filter="hann"),
            "TV": lambda s, x: tv(s),
            "RED-CNN pixel loss": lambda s, x: pixel(jnp.asarray(x)[None])[0],
            "RED-CNN + GAN": lambda s, x: gan(jnp.asarray(x)[None])[0]}


def test_low_dose_ct(benchmark):
    experiment, gan = _trained("gan_ldct_small")
    _, pixel = _trained("gan_ldct_small_pixel")
    folder = RUNS / "data-ldct"
    folder.mkdir(parents=True, exist_ok=True)
    test = experiment.dataset(folder, "test")
    g, data = test.geometry, experiment.data
    methods = _ldct_methods(g, pixel, gan)
    scores: dict[str, list] = {}
    noise: dict[str, list] = {}
    for i in range(len(test)):
        clean = test.slices.example(i, 0)["inputs"]["sinogram"]
        truth = test.slices.example(i, 0)["target"]
        outputs: dict[str, list] = {}
        for k in range(REALISATIONS):
            rng = example_rng(1234, k, i)
            low = low_dose(data.dose)(clean, rng)
            normal = low_dose(data.normal_dose)(clean, rng)
            x = np.asarray(fbp(low, g, filter=data.filter))
            images = {name: np.asarray(f(low, x), np.float32) for name, f in methods.items()}
            images["FBP normal dose (target)"] = np.asarray(fbp(normal, g, filter=data.filter), np.float32)
            for name, image in images.items():
                outputs.setdefault(name, []).append(image)
                if k == 0:
                    scores.setdefault(name, []).append(evaluate(truth[None], image[None]))
        for name, stack in outputs.items():
            stack = np.stack(stack)
            noise.setdefault(name, []).append((stack - stack.mean(0)) * np.sqrt(REALISATIONS / (REALISATIONS - 1)))
    table = {}
    spectra = {}
    for name in scores:
        nps = noise_power_spectrum(np.concatenate(noise[name]), g.pixel_size)
        spectra[name] = nps
        table[name] = {**{m: float(np.mean([s[m] for s in scores[name]])) for m in ("psnr", "ssim")},
                       "noise_std_per_mm": float(np.sqrt(nps.variance)),
                       "nps_mean_freq_per_mm": nps.mean_frequency}
    _print(f"low-dose CT {data.size}x{data.size}, I0 {data.dose:g}", table)
    _nps_figure(spectra)
    benchmark.pedantic(lambda: None, rounds=1)  # scores only


def _nps_figure(spectra: dict) -> None:
    from matplotlib.figure import Figure

    FIGURES.mkdir(parents=True, exist_ok=True)
    fig = Figure(figsize=(6.5, 4))
    ax = fig.subplots()
    for name, nps in spectra.items():
        df = nps.frequencies[1] - nps.frequencies[0]
        ax.plot(nps.frequencies, nps.radial / max(np.sum(nps.radial * nps.frequencies) * df * 2 * np.pi, 1e-30),
                label=f"{name} (std {np.sqrt(nps.variance):.2g} /mm)")
    ax.set(xlabel="spatial frequency (cycles/mm)", ylabel="NPS / noise variance (mm^2)",
           title="noise texture: radial NPS, unit area")
    ax.legend(fontsize="x-small")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(FIGURES / "ldct_nps.png", dpi=120)


# ------------------------------------------------------------------------------------------------
# MRI
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("acceleration", [4.0, 8.0])
def test_mri(benchmark, acceleration):
    experiment, gan = _trained("gan_mri_small")
    experiment = dataclasses.replace(experiment, data=dataclasses.replace(
        experiment.data, acceleration=acceleration))  # 8 % centre: 5 of 64 columns for the maps
    folder = RUNS / "data-mri"
    folder.mkdir(parents=True, exist_ok=True)
    test = experiment.dataset(folder, "test")
    error = load_calibration(RUNS / experiment.name / "model")
    plain, exact = experiment.wrap(gan, consistency=False), experiment.wrap(gan)
    weighted = experiment.wrap(gan, relative_error=error)
    modl_gan, modl_scratch = _trained("modl_gan_small")[1], _trained(_scratch())[1]
    unrolled = {"MoDL + GAN U-Net (fine-tuned)": MultiCoilAdapter(modl_gan),
                "MoDL, same U-Net from random start": MultiCoilAdapter(modl_scratch),
                "MoDL DnCNN (shipped)": MultiCoilAdapter(load_trained(default_weights("modl")))}
    e2e = load_trained(default_weights("e2e-varnet"))
    results: dict[str, list] = {}
    for i in range(len(test)):
        ex = test.example(i, 0)
        k, m, target = ex["inputs"]["masked_kspace"], ex["inputs"]["mask"], ex["target"]
        columns = m[0] > 0
        images = {"zero-filled": reconstruct_slice(k, columns, ReconOptions(method="zero-filled"))}
        for lam in (0.001, 0.002, 0.004, 0.008):
            images[f"l1-wavelet {lam:g}"] = reconstruct_slice(k, columns, ReconOptions(method="l1-wavelet", lam=lam))
        images["E2E-VarNet (shipped)"] = reconstruct_learned(e2e, k, columns)
        inputs = {name: jnp.asarray(v)[None] for name, v in ex["inputs"].items()}
        images["U-Net + GAN"] = _magnitude(plain, inputs)
        images["U-Net + GAN, exact data consistency"] = _magnitude(exact, inputs)
        images[f"U-Net + GAN, noise-weighted DC (rel. error {error:.2f})"] = _magnitude(weighted, inputs)
        for name, model in unrolled.items():
            images[name] = _magnitude(model, inputs)
        for name, image in images.items():
            results.setdefault(name, []).append(evaluate(target[None], np.asarray(image, np.float32)[None]))
    table = {name: {m: float(np.mean([s[m] for s in r])) for m in r[0]} for name, r in results.items()}
    best = max((n for n in table if n.startswith("l1-wavelet")), key=lambda n: table[n]["psnr"])
    table = {n: v for n, v in table.items() if not n.startswith("l1-wavelet") or n == best}
    _print(f"MRI 8-coil {experiment.data.size}x{experiment.data.size}, random {acceleration:g}x", table)
    benchmark.pedantic(lambda: None, rounds=1)  # scores only
