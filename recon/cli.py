"""The ``recon`` command line: simulate, undersample, reconstruct, evaluate, demo.

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


def _calib(text: str) -> tuple[int, int]:
    try:
        ny, nx = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a size like 24x24, got {text!r}") from None
    return ny, nx


def _progress(what: str):
    """A rich progress bar on stderr, shown only when stderr is a terminal."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    console = Console(stderr=True)
    return Progress(TextColumn(what), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=console, disable=not console.is_terminal)


# ------------------------------------------------------------------------------- commands
def _simulate(args: argparse.Namespace) -> None:
    from physics.simulation import simulate_multicoil
    from recon.io import write_kspace

    sim = simulate_multicoil(args.size, args.coils, args.slices, snr_db=args.snr_db, seed=args.seed)
    write_kspace(args.output, sim.kspace, reference=sim.reference, attrs={
        "source": "recon simulate: brain phantom, birdcage coil maps, complex Gaussian noise",
        "snr_db": args.snr_db, "noise_sigma": sim.sigma, "seed": args.seed})
    print(f"wrote {args.output}: kspace {sim.kspace.shape}, noise sigma {sim.sigma:.3g}")


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
def _raw_slices(path: Path):
    """``(num_slices, num_coils, iterator of (kspace, mask))`` of a fastMRI or ISMRMRD raw file."""
    from recon.io import open_raw
    from recon.ismrmrd import is_ismrmrd, read_ismrmrd

    if is_ismrmrd(path):
        kspace, _ = read_ismrmrd(path)
        yield len(kspace), kspace.shape[1], ((k, np.any(k != 0, axis=0)) for k in kspace)
    else:
        with open_raw(path) as raw:
            yield raw.num_slices, raw.num_coils, ((raw.kspace(i), raw.mask(i)) for i in range(raw.num_slices))


def _reconstruct(args: argparse.Namespace) -> None:
    from physics.noise import noise_covariance, whitening_matrix
    from recon.io import read_noise, write_reconstruction
    from recon.pipeline import ReconOptions, reconstruct

    options = ReconOptions(method=args.method, maps=args.maps, iterations=args.iterations,
                           lam=args.lam, calib=args.calib, kernel=args.kernel, crop=args.crop)
    whitening = None
    if args.noise is not None:
        whitening = whitening_matrix(noise_covariance(read_noise(args.noise)))
    with _raw_slices(args.input) as (num_slices, num_coils, slices):
        if whitening is not None and whitening.shape[0] != num_coils:
            raise InvalidDataError(f"{args.noise}: noise scan has {whitening.shape[0]} coils, "
                                   f"{args.input} has {num_coils}")
        with _progress(args.method) as bar:
            task = bar.add_task("slices", total=num_slices)
            images = reconstruct(slices, options, whitening=whitening,
                                 progress=lambda: bar.advance(task))
    attrs = {"method": options.method, "parameters": {
        k: v for k, v in vars(options).items() if k != "method"}, "input": str(args.input),
        "prewhitened": args.noise is not None}
    write_reconstruction(args.output, images, attrs=attrs, input_path=args.input)
    print(f"wrote {args.output}: reconstruction {images.shape}")


def _evaluate(args: argparse.Namespace) -> None:
    from recon.io import center_crop, read_images
    from recon.metrics import evaluate

    reference = read_images(args.reference, args.reference_dataset)
    images = read_images(args.input, "reconstruction")
    if images.shape[0] != reference.shape[0]:
        raise InvalidDataError(f"{args.input} has {images.shape[0]} slices, "
                               f"{args.reference} has {reference.shape[0]}")
    scores = evaluate(reference, center_crop(images, reference.shape[-2:]))
    if args.json:
        print(json.dumps(scores))
    else:
        print("  ".join(f"{k.upper()} {v:.4g}" for k, v in scores.items()))


def _demo(args: argparse.Namespace) -> None:
    from recon.demo import run_demo

    metrics = run_demo(Path(args.out))
    for method, scores in metrics.items():
        print(f"{method:12s} " + "  ".join(f"{k.upper()} {v:.4g}" for k, v in scores.items()))
    print(f"wrote {args.out}/")


# ------------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    from recon.pipeline import MAPS, METHODS, ReconOptions

    defaults = ReconOptions()
    p = argparse.ArgumentParser(prog="recon", description="Physics-informed MRI reconstruction.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser("simulate", help="simulate fully sampled multi-coil k-space from a phantom")
    s.add_argument("-o", "--output", required=True, type=Path)
    s.add_argument("--coils", type=int, default=8)
    s.add_argument("--size", type=int, default=256)
    s.add_argument("--slices", type=int, default=1)
    s.add_argument("--snr-db", type=float, default=30.0)
    s.add_argument("--seed", type=int, default=0)
    s.set_defaults(run=_simulate)

    s = sub.add_parser("undersample", help="apply a sampling mask to fully sampled k-space")
    s.add_argument("input", type=Path)
    s.add_argument("-o", "--output", required=True, type=Path)
    s.add_argument("--pattern", choices=("equispaced", "random", "poisson"), default="equispaced")
    s.add_argument("--acceleration", type=float, default=4.0)
    s.add_argument("--center-fraction", type=float, default=0.08)
    s.add_argument("--seed", type=int, default=0)
    s.set_defaults(run=_undersample)

    s = sub.add_parser("reconstruct", help="reconstruct images from raw k-space")
    s.add_argument("input", type=Path)
    s.add_argument("-o", "--output", required=True, type=Path)
    s.add_argument("--method", choices=METHODS, default=defaults.method)
    s.add_argument("--maps", choices=MAPS, default=defaults.maps, help="coil-map estimate")
    s.add_argument("--iterations", type=int, default=defaults.iterations,
                   help="iteration limit (default: the method's)")
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

    s = sub.add_parser("evaluate", help="NMSE, PSNR and SSIM against a reference (fastMRI style)")
    s.add_argument("input", type=Path, help="file with 'reconstruction'")
    s.add_argument("--reference", required=True, type=Path)
    s.add_argument("--reference-dataset", default="reconstruction_rss")
    s.add_argument("--json", action="store_true")
    s.set_defaults(run=_evaluate)

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
