"""The ``recon`` command line: simulate, simulate-ct, undersample, reconstruct, enhance, evaluate,
train, demo.

Bad input prints one line ``recon: error: ...`` on stderr and exits with status 2.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from physics.errors import InvalidDataError, ReconError
from recon.progress import progress_bar


def _calib(text: str) -> tuple[int, int]:
    try:
        ny, nx = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a size like 24x24, got {text!r}") from None
    return ny, nx


# ------------------------------------------------------------------------------- commands
def _simulate(args: argparse.Namespace) -> None:
    from physics.simulation import simulate_multicoil, simulate_radial
    from recon.io import write_kspace, write_noncartesian

    attrs = {"source": "recon simulate: brain phantom, birdcage coil maps, complex Gaussian noise",
             "snr_db": args.snr_db, "seed": args.seed}
    if args.trajectory == "radial":
        sim = simulate_radial(args.size, args.coils, args.slices, spokes=args.spokes,
                              golden=not args.uniform, snr_db=args.snr_db, seed=args.seed)
        write_noncartesian(args.output, sim.kspace, sim.trajectory, (args.size, args.size),
                           reference=sim.reference, attrs={**attrs, "noise_sigma": sim.sigma,
                                                            "golden_angle": not args.uniform})
    else:
        sim = simulate_multicoil(args.size, args.coils, args.slices, snr_db=args.snr_db, seed=args.seed)
        write_kspace(args.output, sim.kspace, reference=sim.reference, attrs={**attrs, "noise_sigma": sim.sigma})
    print(f"wrote {args.output}: kspace {sim.kspace.shape}, noise sigma {sim.sigma:.3g}")


def _ct_geometry(args: argparse.Namespace, image_shape: tuple[int, ...], pixel: float):
    """The geometry of ``recon simulate-ct`` from its options; defaults cover the image circle."""
    from physics import ct_geometry

    fov = max(image_shape[-2:]) * pixel
    R = args.source_to_isocenter or 2.0 * fov
    D = args.source_to_detector or 1.5 * R
    scan = np.deg2rad(args.scan if args.scan is not None else (180.0 if args.geometry == "parallel" else 360.0))
    angles = np.linspace(0.0, scan, args.angles, endpoint=False)
    radius = fov / np.sqrt(2)  # the image's circumscribed circle
    if args.geometry == "parallel":
        spacing = args.detector_spacing or pixel
        detectors = args.detectors or int(np.ceil(2 * radius / spacing)) + 2
        return ct_geometry.parallel_beam(image_shape, angles, detectors, detector_spacing=spacing,
                                         pixel_size=pixel)
    spacing = args.detector_spacing or pixel * D / R
    half = D * np.tan(np.arcsin(min(radius / R, 0.99)))
    detectors = args.detectors or int(np.ceil(2 * half / spacing)) + 2
    if args.geometry == "fan":
        return ct_geometry.fan_beam(image_shape, angles, detectors, source_to_isocenter=R,
                                    source_to_detector=D, detector_spacing=spacing, pixel_size=pixel,
                                    detector="arc" if args.arc else "flat")
    rows = int(np.ceil(image_shape[0] * pixel * D / (R - radius) / spacing)) + 2
    return ct_geometry.cone_beam(image_shape, angles, (rows, detectors), source_to_isocenter=R,
                                 source_to_detector=D, detector_spacing=(spacing, spacing),
                                 pixel_size=pixel)


def _simulate_ct(args: argparse.Namespace) -> None:
    import jax

    from physics.ct import ct_operator
    from physics.ct_phantom import anatomical_phantom, shepp_logan_ct
    from physics.dose import log_transform, photon_counts
    from recon.io import read_ct_image, write_ct

    cone = args.geometry == "cone"
    if args.image is not None:  # (slices, ny, nx): slices of a 2D scan, or the cone-beam volume
        image, pixel = read_ct_image(args.image)
    else:
        pixel = args.pixel_size
        if cone or args.phantom == "shepp-logan":
            image = shepp_logan_ct((args.size,) * (3 if cone else 2))
        else:
            image = anatomical_phantom((args.size,) * 2, seed=args.seed)
        image = image if cone else image[None]
    geometry = _ct_geometry(args, image.shape[-3:] if cone else image.shape[-2:], pixel)
    A = ct_operator(geometry)
    sinogram = np.asarray(A(jax.numpy.asarray(image)), np.float32)
    counts = None
    if args.dose is not None:
        counts = np.asarray(photon_counts(sinogram, args.dose, seed=args.seed,
                                          electronic_sigma=args.electronic_noise), np.float32)
        sinogram = np.asarray(log_transform(counts, args.dose), np.float32)
    write_ct(args.output, sinogram, geometry, counts=counts, I0=args.dose, image=image, attrs={
        "source": f"recon simulate-ct: {'--image ' + str(args.image) if args.image else args.phantom} "
                  f"projected by recon-engine's Joseph projector",
        "seed": args.seed})
    print(f"wrote {args.output}: {geometry.kind} sinogram {sinogram.shape}"
          + (f", Poisson noise at I0 = {args.dose:g}" if args.dose else ", noiseless"))


def _undersample(args: argparse.Namespace) -> None:
    from physics import sampling
    from recon.io import open_raw, write_kspace

    with open_raw(args.input) as raw:
        slices, _, ny, nx = raw.shape
        if args.pattern == "poisson":
            calib = (max(2, round(ny * args.center_fraction)), max(2, round(nx * args.center_fraction)))
            mask = sampling.poisson_disc_mask((ny, nx), args.acceleration, calib=calib, seed=args.seed)
        else:
            make = sampling.equispaced_mask if args.pattern == "equispaced" else sampling.random_mask
            mask = make(nx, args.acceleration, args.center_fraction, seed=args.seed)
        kspace = np.stack([raw.kspace(i) * mask for i in range(slices)])
        attrs = {**raw.attrs, "pattern": args.pattern, "acceleration": args.acceleration,
                 "center_fraction": args.center_fraction, "mask_seed": args.seed}
        reference = raw.reference()
    write_kspace(args.output, kspace, mask=mask, reference=reference, attrs=attrs)
    print(f"wrote {args.output}: {args.pattern} mask, acceleration {sampling.acceleration(mask):.2f}")


@contextlib.contextmanager
def _slice_jobs(path: Path, cartesian, noncartesian):
    """``(num_slices, num_coils, iterator of zero-argument functions, one image per slice)`` of a
    fastMRI, non-Cartesian or ISMRMRD raw file; the files are read lazily. ``cartesian(kspace,
    mask)`` reconstructs a Cartesian slice, ``noncartesian(kspace, trajectory=, image_shape=, dcf=)``
    a non-Cartesian one (``None``: the method has none)."""
    from functools import partial

    from recon.io import is_noncartesian, open_raw, read_noncartesian
    from recon.ismrmrd import is_ismrmrd, read_ismrmrd

    if is_noncartesian(path):
        if noncartesian is None:
            raise InvalidDataError(f"{path} holds non-Cartesian k-space; this method needs Cartesian k-space")
        d = read_noncartesian(path)
        one = partial(noncartesian, trajectory=d.trajectory, image_shape=d.image_shape, dcf=d.dcf)
        yield len(d.kspace), d.kspace.shape[1], (partial(one, k) for k in d.kspace)
    elif is_ismrmrd(path):
        kspace, _ = read_ismrmrd(path)
        yield len(kspace), kspace.shape[1], (partial(cartesian, k, np.any(k != 0, axis=0)) for k in kspace)
    else:
        with open_raw(path) as raw:
            yield raw.num_slices, raw.num_coils, (lambda i=i: cartesian(raw.kspace(i), raw.mask(i))
                                                  for i in range(raw.num_slices))


def _learned_model(args: argparse.Namespace):
    """``(model, parameters)`` of a learned ``--method``: the trained weights and where they came from."""
    from recon.learned import default_weights, load_trained

    weights = args.weights or default_weights(args.method)
    model = load_trained(weights, method=args.method)
    return model, {"weights": str(weights), "model": model.config.to_dict()}


def _pnp_options(args: argparse.Namespace, method: str) -> dict:
    """The PnP keyword arguments of ``method`` from ``--iterations``, ``--rho``, ``--step``, after
    checking that ``--denoiser`` (and ``--rho``/``--step``) go with the method."""
    from recon.enhance import PNP_ITERATIONS, PNP_METHODS, PNP_RHO

    if method not in PNP_METHODS:
        given = [flag for flag, value in (("--denoiser", args.denoiser), ("--rho", args.rho),
                                          ("--step", args.step)) if value is not None]
        if given:
            raise InvalidDataError(f"{', '.join(given)}: only for --method pnp-admm or pnp-fista, "
                                   f"not {method}")
        return {}
    if args.denoiser is None:
        raise InvalidDataError(f"--method {method} needs --denoiser DIR, a denoiser folder written by "
                               "recon train (weights.msgpack + config.json)")
    wrong = "--step" if method == "pnp-admm" else "--rho"
    if getattr(args, wrong[2:]) is not None:
        raise InvalidDataError(f"{wrong} does not apply to --method {method}")
    options = {"method": method, "iterations": PNP_ITERATIONS if args.iterations is None else args.iterations}
    if method == "pnp-admm":
        return options | {"rho": PNP_RHO if args.rho is None else args.rho}
    return options | {"step": args.step}


def _denoiser(args: argparse.Namespace, options: dict):
    """``(model, parameters)`` of a PnP ``--method``: the loaded denoiser and the run's parameters."""
    from recon.enhance import load_denoiser

    model, config = load_denoiser(args.denoiser)
    return model, {"denoiser": str(args.denoiser), "model": config,
                   **{k: v for k, v in options.items() if k != "method"}}


def _write(args: argparse.Namespace, images: np.ndarray, attrs: dict, report=None) -> None:
    """Write the reconstruction, with the trust report's fields when there is one."""
    from recon.io import write_reconstruction
    from recon.trust import write_trust

    if report is None:
        write_reconstruction(args.output, images, attrs=attrs, input_path=args.input)
    else:
        write_trust(args.output, images, report, attrs=attrs, input_path=args.input)
    flagged = [] if report is None else np.flatnonzero(np.asarray(report.suspicious).reshape(-1)).tolist()
    print(f"wrote {args.output}: reconstruction {images.shape}"
          + (f"; trust: slices {flagged} fit the data worse than the noise explains" if flagged else ""))


def _reconstruct_ct(args: argparse.Namespace) -> None:
    from recon.ct import CT_METHODS, reconstruct_ct
    from recon.enhance import PNP_METHODS, reconstruct_pnp_ct
    from recon.io import read_ct
    from recon.learned import LEARNED_METHODS, reconstruct_learned_ct
    from recon.trust import ct_sigma, ct_trust

    method = args.method or "fbp"
    allowed = CT_METHODS + tuple(LEARNED_METHODS) + PNP_METHODS
    if method not in allowed:
        raise InvalidDataError(f"{args.input} is a CT file: --method must be one of {allowed}, got {method!r}")
    pnp = _pnp_options(args, method)
    if method in LEARNED_METHODS:
        model, parameters = _learned_model(args)
    elif pnp:
        model, parameters = _denoiser(args, pnp)
    else:
        parameters = {"iterations": args.iterations, "lambda": args.lam, "filter": args.filter}
    data = read_ct(args.input)
    g = data.geometry
    report = None
    with progress_bar(method) as bar:
        task = bar.add_task("slices", total=1 if g.kind == "cone" else len(data.sinogram))
        if method in LEARNED_METHODS:
            images = reconstruct_learned_ct(model, data.sinogram, g, progress=lambda: bar.advance(task))
            report = ct_trust(images, data.sinogram, g, sigma=ct_sigma(data))
        elif pnp:
            images, report = reconstruct_pnp_ct(model, data.sinogram, g, sigma=ct_sigma(data),
                                                progress=lambda: bar.advance(task), **pnp)
        else:
            images = reconstruct_ct(data.sinogram, g, method=method, iterations=args.iterations,
                                    lam=args.lam, filter=args.filter, progress=lambda: bar.advance(task))
    attrs = {"method": method, "parameters": parameters, "input": str(args.input), "units": "mm^-1",
             "pixel_size_mm": g.pixel_size}
    _write(args, images, attrs, report)


def _noise_sigma(path: Path) -> float | None:
    """The root attribute ``noise_sigma`` of a raw file (``recon simulate`` writes it), or None."""
    import h5py

    with h5py.File(path, "r") as f:
        value = f.attrs.get("noise_sigma")
    return None if value is None else float(value)


def _reconstruct(args: argparse.Namespace) -> None:
    from functools import partial

    from physics.noise import noise_covariance, whitening_matrix
    from recon.enhance import reconstruct_pnp
    from recon.io import is_ct, read_noise
    from recon.learned import LEARNED_METHODS, reconstruct_learned
    from recon.pipeline import ReconOptions, reconstruct_noncartesian_slice, reconstruct_slice
    from recon.trust import mri_trust, stack_reports

    if is_ct(args.input):
        return _reconstruct_ct(args)
    method = args.method or "sense"
    pnp = _pnp_options(args, method)
    whitening = None
    if args.noise is not None:
        whitening = whitening_matrix(noise_covariance(read_noise(args.noise)))
    # the file's noise level holds for unwhitened data only; else the report estimates it
    sigma = _noise_sigma(args.input) if whitening is None else None
    if method in LEARNED_METHODS:
        model, parameters = _learned_model(args)

        def cartesian(kspace, mask):
            image = reconstruct_learned(model, kspace, mask, whitening=whitening)
            return image, mri_trust(image, kspace, mask, whitening=whitening, sigma=sigma)
        noncartesian = None
    elif pnp:
        model, parameters = _denoiser(args, pnp)
        options = ReconOptions(maps=args.maps, calib=args.calib, kernel=args.kernel, crop=args.crop)
        parameters |= {k: v for k, v in vars(options).items() if k in ("maps", "calib", "kernel", "crop")}
        cartesian = partial(reconstruct_pnp, model, options=options, whitening=whitening, sigma=sigma, **pnp)
        noncartesian = None
    else:
        options = ReconOptions(method=method, maps=args.maps, iterations=args.iterations, lam=args.lam,
                               calib=args.calib, kernel=args.kernel, crop=args.crop)
        parameters = {k: v for k, v in vars(options).items() if k != "method"}
        cartesian = partial(reconstruct_slice, options=options, whitening=whitening)
        noncartesian = partial(reconstruct_noncartesian_slice, options=options, whitening=whitening)
    with _slice_jobs(args.input, cartesian, noncartesian) as (num_slices, num_coils, jobs):
        if whitening is not None and whitening.shape[0] != num_coils:
            raise InvalidDataError(f"{args.noise}: noise scan has {whitening.shape[0]} coils, "
                                   f"{args.input} has {num_coils}")
        results = []
        with progress_bar(method) as bar:
            task = bar.add_task("slices", total=num_slices)
            for job in jobs:
                results.append(job())
                bar.advance(task)
    report = None
    if isinstance(results[0], tuple):  # learned and PnP methods: (image, trust report) per slice
        results, reports = zip(*results)
        report = stack_reports(reports)
    attrs = {"method": method, "parameters": parameters, "input": str(args.input),
             "prewhitened": args.noise is not None}
    _write(args, np.stack(results), attrs, report)


def _enhance(args: argparse.Namespace) -> None:
    from recon.enhance import enhance_file, load_denoiser
    from recon.train import load_calibration

    model, config = load_denoiser(args.model)
    relative_error = load_calibration(args.model)
    consistency = args.data_consistency or ("noise" if relative_error is not None else "exact")
    with progress_bar("enhance") as bar:
        def progress(total: int):
            task = bar.add_task("slices", total=total)
            return lambda: bar.advance(task)

        summary = enhance_file(args.input, args.output, model,
                               data_consistency=consistency, relative_error=relative_error, progress=progress,
                               attrs={"method": "enhance", "weights": str(args.model), "model": config})
    flagged = summary["suspicious"]
    print(f"wrote {args.output}: enhanced {summary['input']} {tuple(summary['shape'])}"
          + (f"; trust: slices {flagged} fit the data worse than the noise explains" if flagged else ""))


def _reference_dataset(path: Path) -> str:
    """``reconstruction_rss`` (MRI raw files) or ``image`` (CT files), whichever ``path`` holds."""
    import h5py

    from recon.io import is_ct

    if is_ct(path):
        return "image"
    with h5py.File(path, "r") as f:
        return "image" if "image" in f and "reconstruction_rss" not in f else "reconstruction_rss"


def _print_scores(scores: dict[str, float], label: str = "") -> None:
    print(label + "  ".join(f"{k.upper()} {v:.4g}" for k, v in scores.items()))


def _evaluate(args: argparse.Namespace) -> None:
    from recon.io import center_crop, read_images
    from recon.metrics import evaluate

    if args.model is not None:
        return _evaluate_model(args)
    if args.input is None or args.reference is None:
        raise InvalidDataError("recon evaluate needs INPUT and --reference REF (or --model DIR to score "
                               "a trained model on its experiment's test set)")
    reference = read_images(args.reference, args.reference_dataset or _reference_dataset(args.reference))
    images = read_images(args.input, "reconstruction")
    if images.shape[0] != reference.shape[0]:
        raise InvalidDataError(f"{args.input} has {images.shape[0]} slices, "
                               f"{args.reference} has {reference.shape[0]}")
    scores = evaluate(reference, center_crop(images, reference.shape[-2:]))
    if args.json:
        print(json.dumps(scores))
    else:
        _print_scores(scores)


def _evaluate_model(args: argparse.Namespace) -> None:
    import tempfile

    from experiments.base import EXPERIMENT_FILE, evaluate, get

    if args.input is not None or args.reference is not None:
        raise InvalidDataError("--model scores a trained model on its experiment's test set and takes "
                               "no INPUT or --reference; to score a file, run recon reconstruct --method "
                               "... --weights DIR, then recon evaluate OUT --reference REF")
    spec = args.experiment or str(args.model / EXPERIMENT_FILE)
    if args.experiment is None and not Path(spec).is_file():
        raise InvalidDataError(f"{args.model} has no {EXPERIMENT_FILE}; name its experiment with "
                               "--experiment NAME (or a .json file)")
    experiment = get(spec)
    with contextlib.ExitStack() as stack:
        folder = args.data or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="recon-eval-")))
        scores = evaluate(experiment, args.model, folder)
    if args.json:
        print(json.dumps(scores))
    else:
        for name, values in scores.items():
            _print_scores(values, f"{name:12s} ")


def _train(args: argparse.Namespace) -> None:
    from experiments.base import get, run

    experiment = get(args.experiment)
    out = args.out or Path("out/train") / experiment.name
    history = run(experiment, out, steps=args.steps, resume=args.resume)
    last = history[-1]
    print(f"trained {experiment.name}: {last['step']} steps, loss {last['loss']:.4g}; "
          f"wrote {out / 'model'}")


def _demo(args: argparse.Namespace) -> None:
    from recon.demo import run_demo

    metrics = run_demo(Path(args.out))
    for method, scores in metrics.items():
        _print_scores(scores, f"{method:12s} ")
    print(f"wrote {args.out}/")


# ------------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    from recon.ct import CT_METHODS
    from recon.enhance import PNP_ITERATIONS, PNP_METHODS, PNP_RHO
    from recon.learned import LEARNED_METHODS
    from recon.pipeline import MAPS, METHODS, ReconOptions

    defaults = ReconOptions()
    p = argparse.ArgumentParser(prog="recon", description="Physics-informed MRI and CT reconstruction.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser("simulate", help="simulate multi-coil k-space (Cartesian or radial) from a phantom")
    s.add_argument("-o", "--output", required=True, type=Path)
    s.add_argument("--coils", type=int, default=8)
    s.add_argument("--size", type=int, default=256)
    s.add_argument("--slices", type=int, default=1)
    s.add_argument("--snr-db", type=float, default=30.0)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--trajectory", choices=("cartesian", "radial"), default="cartesian")
    s.add_argument("--spokes", type=int, default=64, help="radial: number of spokes")
    s.add_argument("--uniform", action="store_true", help="radial: uniform angles instead of golden")
    s.set_defaults(run=_simulate)

    s = sub.add_parser("simulate-ct", help="simulate a CT sinogram (optionally low-dose) from an image")
    s.add_argument("-o", "--output", required=True, type=Path)
    s.add_argument("--geometry", choices=("parallel", "fan", "cone"), default="parallel")
    s.add_argument("--angles", type=int, default=360, help="number of projections")
    s.add_argument("--scan", type=float, default=None,
                   help="angular range in degrees (default 180 parallel, 360 fan/cone)")
    s.add_argument("--dose", type=float, default=None, metavar="I0",
                   help="incident photons per detector bin: Poisson noise (default: noiseless)")
    s.add_argument("--electronic-noise", type=float, default=0.0, help="Gaussian noise std in counts")
    s.add_argument("--image", type=Path, default=None,
                   help="HDF5 with 'image' (slices, ny, nx) in mm^-1 and attribute pixel_size_mm")
    s.add_argument("--phantom", choices=("shepp-logan", "anatomical"), default="shepp-logan")
    s.add_argument("--size", type=int, default=256, help="phantom size in pixels")
    s.add_argument("--pixel-size", type=float, default=1.0, help="phantom pixel size in mm")
    s.add_argument("--detectors", type=int, default=None, help="detector bins (columns for cone)")
    s.add_argument("--detector-spacing", type=float, default=None, help="mm")
    s.add_argument("--source-to-isocenter", type=float, default=None, help="mm (fan, cone)")
    s.add_argument("--source-to-detector", type=float, default=None, help="mm (fan, cone)")
    s.add_argument("--arc", action="store_true", help="fan beam: arc (equiangular) detector")
    s.add_argument("--seed", type=int, default=0)
    s.set_defaults(run=_simulate_ct)

    s = sub.add_parser("undersample", help="apply a sampling mask to fully sampled k-space")
    s.add_argument("input", type=Path)
    s.add_argument("-o", "--output", required=True, type=Path)
    s.add_argument("--pattern", choices=("equispaced", "random", "poisson"), default="equispaced")
    s.add_argument("--acceleration", type=float, default=4.0)
    s.add_argument("--center-fraction", type=float, default=0.08)
    s.add_argument("--seed", type=int, default=0)
    s.set_defaults(run=_undersample)

    s = sub.add_parser("reconstruct", help="reconstruct images from raw k-space or a CT sinogram")
    s.add_argument("input", type=Path)
    s.add_argument("-o", "--output", required=True, type=Path)
    s.add_argument("--method", choices=METHODS + CT_METHODS + tuple(LEARNED_METHODS) + PNP_METHODS,
                   default=None, help="default: sense (MRI), fbp (CT); learned and pnp-* outputs hold "
                                      "a trust report (trust/...)")
    s.add_argument("--weights", type=Path, default=None,
                   help="learned methods: model folder of recon train (default for e2e-varnet: the "
                        "model shipped in the package)")
    s.add_argument("--denoiser", type=Path, default=None,
                   help="pnp-admm, pnp-fista: denoiser folder of recon train (a redcnn or unet_denoiser)")
    s.add_argument("--rho", type=float, default=None,
                   help=f"pnp-admm: penalty, relative to ||A|| = 1; larger trusts the denoiser more "
                        f"(default {PNP_RHO})")
    s.add_argument("--step", type=float, default=None,
                   help="pnp-fista: gradient step (default 1 / ||A||^2, by power iteration)")
    s.add_argument("--filter", choices=("ramp", "shepp-logan", "cosine", "hann"), default="ramp",
                   help="CT FBP/FDK filter")
    s.add_argument("--maps", choices=MAPS, default=defaults.maps, help="coil-map estimate")
    s.add_argument("--iterations", type=int, default=defaults.iterations,
                   help=f"iteration limit (default: the method's; pnp-* {PNP_ITERATIONS})")
    s.add_argument("--lambda", dest="lam", type=float, default=defaults.lam,
                   help="regularisation weight (default: the method's, see recon.pipeline)")
    s.add_argument("--calib", type=_calib, default=None,
                   help="calibration block NYxNX (default: largest fully sampled centred block)")
    s.add_argument("--kernel", type=int, default=defaults.kernel,
                   help="ESPIRiT kernel width (default: adapted to the calibration block)")
    s.add_argument("--crop", type=float, default=defaults.crop,
                   help="ESPIRiT eigenvalue crop (maps are zero below it); 0 keeps them everywhere")
    s.add_argument("--noise", type=Path, default=None,
                   help="HDF5 noise scan (dataset 'noise' (coils, samples)) for pre-whitening")
    s.set_defaults(run=_reconstruct)

    s = sub.add_parser("enhance", help="enhance images (or raw MRI / CT data) with a trained denoiser, "
                                       "with a trust report")
    s.add_argument("input", type=Path, help="reconstruction or CT image file, or a fastMRI raw or CT "
                                            "file (then reconstructed zero-filled / FBP first)")
    s.add_argument("--model", type=Path, required=True,
                   help="denoiser folder of recon train (weights.msgpack + config.json)")
    s.add_argument("-o", "--output", required=True, type=Path)
    s.add_argument("--data-consistency", choices=("noise", "exact", "none"), default=None,
                   help="raw MRI: fit the measured k-space to within its noise, weighed by the "
                        "model's expected error ('noise', the default for models of recon train, "
                        "which write calibration.json), exactly ('exact', the default otherwise), "
                        "or not at all ('none')")
    s.set_defaults(run=_enhance)

    s = sub.add_parser("evaluate", help="NMSE, PSNR and SSIM against a reference (fastMRI style), or of "
                                        "a trained model on its experiment's test set")
    s.add_argument("input", type=Path, nargs="?", default=None, help="file with 'reconstruction'")
    s.add_argument("--reference", type=Path, default=None)
    s.add_argument("--reference-dataset", default=None,
                   help="default: reconstruction_rss (MRI) or image (CT)")
    s.add_argument("--model", type=Path, default=None,
                   help="model folder of recon train: score it and the zero-filled (MRI) or FBP (CT) "
                        "baseline on the experiment's held-out test set")
    s.add_argument("--experiment", default=None,
                   help="with --model: experiment name or .json (default: DIR/experiment.json)")
    s.add_argument("--data", type=Path, default=None,
                   help="with --model: folder for the simulated test set (default: a temporary one)")
    s.add_argument("--json", action="store_true")
    s.set_defaults(run=_evaluate)

    s = sub.add_parser("train", help="train an experiment (experiments/<name>.py or a .json)")
    s.add_argument("experiment", help="experiment name, e.g. e2e_varnet_small, or an experiment .json")
    s.add_argument("--out", type=Path, default=None, help="training folder (default: out/train/NAME)")
    s.add_argument("--steps", type=int, default=None, help="total steps (default: the experiment's)")
    s.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in --out")
    s.set_defaults(run=_train)

    s = sub.add_parser("demo", help="undersample and reconstruct bundled data, write a figure")
    s.add_argument("--out", default="out/demo")
    s.set_defaults(run=_demo)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.run(args)
    except ReconError as e:
        print(f"recon: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("recon: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
