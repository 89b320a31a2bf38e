"""The trust report: does a reconstruction explain the data, and where does it depart from a classical one?

A reconstruction ``x`` of data ``y = A x_true + n`` (noise ``n`` of standard deviation ``sigma``
per sample, ``E|n|^2 = sigma^2`` for complex data) that fits the data as well as the truth leaves
a residual ``||A x - y||`` of at most about ``||n|| = sigma sqrt(m)`` (``m`` measured samples; a
least-squares fit leaves ``sigma sqrt(m - rank A)``). A network that adds structure the data do not
support (a hallucination) raises the residual by ``||A s||`` for the added structure ``s``. The report
compares, per slice, the normalised residual ``r = ||A x - y|| / ||y||`` with the one expected from
noise alone, ``e = sigma sqrt(m) / ||y||``, and flags ``r > factor e``. The default factor 2
means the unexplained part holds more than 3 times the energy of the noise itself (``2^2 - 1``),
far above the chi-square spread of ``||n||^2`` (relative ``1 / sqrt(m)``), the bias of a
regularised reconstruction (on the demo slice CG-SENSE at its default lambda leaves 1.59 ``e``,
the shipped E2E-VarNet 1.60 ``e``; a bright disc added to the reference 7.7 ``e``) and the
error of the noise estimate. A small residual does not prove the image right: structure in the null
space of ``A`` (unmeasured k-space) is invisible to it; the departure map from a classical
reconstruction shows where to look.

Where the noise level is unknown (``sigma`` NaN, e.g. noiseless simulated data whose k-space or
detector corners are exactly zero) ``expected`` is NaN and nothing is flagged: no verdict.

The report of a given modality: :func:`mri_trust` (a magnitude or complex image of one Cartesian
multi-coil slice, against CG-SENSE with ESPIRiT maps), :func:`sense_trust` (any image on a given
``MultiCoilMRI``), :func:`ct_trust` (2D CT slices against FBP); :func:`ct_sigma` is the noise of a
low-dose CT file, :func:`stack_reports` joins per-slice reports.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from physics.ct import ct_operator
from physics.ct_geometry import CTGeometry
from physics.errors import InvalidDataError, ShapeError
from physics.linop import LinearOperator
from physics.mri import MultiCoilMRI
from physics.noise import prewhiten
from recon.fbp import fbp
from recon.io import CTData, write_reconstruction
from recon.pipeline import ReconOptions, coil_maps
from recon.sense import cg_sense

FACTOR = 2.0
# CG-SENSE of the MRI reports: the defaults of ``recon reconstruct --method sense`` (recon.pipeline)
_SENSE_LAM, _SENSE_ITERATIONS, _SENSE_TOL = 0.01, 20, 1e-4
_LN2 = float(np.log(2.0))
_REAL_MEDIAN = 0.6744897501960817  # median of |N(0, 1)|


class TrustReport(NamedTuple):
    """Per-slice trust figures (``batch`` = the leading axes of ``y`` before ``A.out_shape``).

    residual: (*batch) float32, ``||A x - y|| / ||y||``.
    expected: (*batch) float32, ``sigma sqrt(m) / ||y||``, the residual of noise alone.
    sigma: (*batch) float32, noise standard deviation per sample (given or estimated).
    measured: (*batch) int32, ``m``, the number of non-zero samples of ``y``.
    suspicious: (*batch) bool, ``residual > factor * expected``.
    factor: the threshold factor used.
    departure: (*batch, *A.in_shape) float32 ``|x - classical| / max|classical|`` (max per
        slice), or None without a classical reconstruction.
    """

    residual: jax.Array
    expected: jax.Array
    sigma: jax.Array
    measured: jax.Array
    suspicious: jax.Array
    factor: float
    departure: jax.Array | None


def estimate_sigma(y: jax.Array, *, ndim: int = 2, pool: int = 0, corner: float = 0.125) -> jax.Array:
    """Noise standard deviation per sample from the corners of the data's trailing ``ndim`` axes.

    Meant for centred Cartesian k-space (the outer k-space corners hold almost no signal) and for
    sinograms whose outer detector bins miss the object. Takes the samples of the ``2^ndim``
    corner blocks (``corner`` of each axis, at least 2 samples), pooled over the ``pool`` axes
    before them (e.g. 1 for the coils of ``(coils, ky, kx)``), drops unmeasured (exactly zero)
    ones, and uses the median magnitude, robust to a little signal: ``sigma = median|y| /
    sqrt(ln 2)`` for circular complex noise with ``E|n|^2 = sigma^2`` (Rayleigh),
    ``median|y| / 0.6745`` for real noise.

    Args:
        y: data ``(..., *spatial)``; leading axes beyond those reduced are kept.
        ndim: number of trailing axes that hold the corners (2 for ``(ky, kx)``).
        pool: number of axes before those whose samples share one estimate.
        corner: fraction of each axis in a corner block (0 < corner <= 0.5).

    Returns:
        sigma, float32 of shape ``y.shape[:-(ndim + pool)]`` (NaN where no corner sample was
        measured).
    """
    if not 0 < corner <= 0.5:
        raise InvalidDataError(f"estimate_sigma: corner must be in (0, 0.5], got {corner!r}")
    y = jnp.asarray(y)
    if ndim < 1 or pool < 0 or y.ndim < ndim + pool:
        raise ShapeError(f"estimate_sigma: data of shape {y.shape} needs ndim + pool = {ndim} + "
                         f"{pool} axes (ndim >= 1, pool >= 0)")
    spatial = y.shape[y.ndim - ndim:]
    keep = [np.zeros(n, bool) for n in spatial]
    for k, n in zip(keep, spatial):
        w = max(2, int(round(corner * n)))
        k[:w] = k[n - w:] = True
    block = np.ix_(*keep)
    mag = jnp.abs(y[(Ellipsis, *block)])
    mag = jnp.where(mag > 0, mag, jnp.nan).astype(jnp.float32)
    median = jnp.nanmedian(mag.reshape(*y.shape[:y.ndim - ndim - pool], -1), axis=-1)
    return median / (np.sqrt(_LN2) if jnp.iscomplexobj(y) else _REAL_MEDIAN)


def kspace_sigma(y: jax.Array) -> jax.Array:
    """Noise per sample of Cartesian multi-coil k-space ``y (..., coils, ky, kx)``: :func:`estimate_sigma`
    of the k-space corners pooled over coils, or, where no corner sample was measured (column
    masks at high acceleration), of the outer ky rows of every measured column. Float32
    ``y.shape[:-3]`` (NaN where neither holds a measured sample)."""
    corners = estimate_sigma(y, pool=1)
    rows = estimate_sigma(jnp.swapaxes(jnp.asarray(y), -1, -2), ndim=1, pool=2)
    return jnp.where(jnp.isnan(corners), rows, corners)


def departure_map(x: jax.Array, classical: jax.Array, *, ndim: int = 2) -> jax.Array:
    """``|x - classical| / max|classical|``, float32 of the shape of ``x``; the maximum is taken
    per image over the trailing ``ndim`` axes (1 where ``classical`` is all zero)."""
    x, classical = jnp.asarray(x), jnp.asarray(classical)
    if classical.shape != x.shape:
        raise ShapeError(f"departure_map: classical has shape {classical.shape}, expected the "
                         f"shape of x {x.shape}")
    axes = tuple(range(x.ndim - ndim, x.ndim))
    peak = jnp.max(jnp.abs(classical), axis=axes, keepdims=True)
    return (jnp.abs(x - classical) / jnp.where(peak > 0, peak, 1.0)).astype(jnp.float32)


def trust_report(A: LinearOperator, y: jax.Array, x: jax.Array, *, sigma: float | jax.Array | None = None,
                 classical: jax.Array | None = None, factor: float = FACTOR,
                 noise_ndim: int = 2) -> TrustReport:
    """Residual against noise per slice, and the departure from a classical reconstruction.

    Args:
        A: the forward operator of the data; acts on the trailing ``A.in_shape`` axes of ``x`` and
            broadcasts over leading (slice) axes.
        y: measured data ``(*batch, *A.out_shape)``, zero where not measured.
        x: reconstruction ``(*batch, *A.in_shape)`` (or without batch axes).
        sigma: noise standard deviation per sample (scalar or ``(*batch)``); default
            :func:`estimate_sigma` of ``y`` with corners in its trailing ``noise_ndim`` axes,
            pooled over the rest of ``A.out_shape`` (Cartesian k-space whose corners hold noise
            only; pass ``sigma`` for other data, e.g. from a noise scan).
        classical: a classical reconstruction of the shape of ``x`` for the departure map.
        factor: ``suspicious = residual > factor * expected`` (see the module docstring).
        noise_ndim: number of trailing data axes holding the k-space corners (2 for ``(ky, kx)``).

    Returns:
        :class:`TrustReport`; ``m`` counts the non-zero samples of ``y``.
    """
    if not factor > 0:
        raise InvalidDataError(f"trust_report: factor must be > 0, got {factor!r}")
    y = jnp.asarray(y)
    x = jnp.asarray(x)
    out_axes = tuple(range(y.ndim - len(A.out_shape), y.ndim))
    if tuple(y.shape[y.ndim - len(A.out_shape):]) != tuple(A.out_shape):
        raise ShapeError(f"trust_report: data of shape {y.shape} does not end in the operator's "
                         f"output shape {tuple(A.out_shape)}")
    residual_data = A(x) - y
    if residual_data.shape != y.shape:
        raise ShapeError(f"trust_report: A(x) has shape {residual_data.shape}, data {y.shape}; "
                         "x must have the data's slice axes")
    norm_y = jnp.sqrt(jnp.sum(jnp.abs(y) ** 2, axis=out_axes))
    safe = jnp.where(norm_y > 0, norm_y, 1.0)
    residual = jnp.sqrt(jnp.sum(jnp.abs(residual_data) ** 2, axis=out_axes)) / safe
    measured = jnp.sum(y != 0, axis=out_axes).astype(jnp.int32)
    if sigma is None:
        s = estimate_sigma(y, ndim=noise_ndim, pool=len(A.out_shape) - noise_ndim)
    else:
        s = jnp.broadcast_to(jnp.asarray(sigma, jnp.float32), norm_y.shape)
    expected = s * jnp.sqrt(measured.astype(jnp.float32)) / safe
    departure = None
    if classical is not None:
        classical = jnp.asarray(classical)
        if classical.shape != x.shape:
            raise ShapeError(f"trust_report: classical has shape {classical.shape}, expected the "
                             f"shape of x {x.shape}")
        departure = departure_map(x, classical, ndim=len(A.in_shape))
    return TrustReport(residual.astype(jnp.float32), expected.astype(jnp.float32), s.astype(jnp.float32),
                       measured, residual > factor * expected, float(factor), departure)


def stack_reports(reports: Sequence[TrustReport]) -> TrustReport:
    """Per-slice reports (each of one slice, no batch axes) as one report with a leading slice axis.

    Raises:
        InvalidDataError: no reports, different factors, departure maps in some reports only.
    """
    reports = list(reports)
    if not reports:
        raise InvalidDataError("stack_reports: no reports to stack")
    if len({r.factor for r in reports}) != 1 or len({r.departure is None for r in reports}) != 1:
        raise InvalidDataError("stack_reports: the reports differ in factor or in having a departure map")
    fields = {name: jnp.stack([getattr(r, name) for r in reports])
              for name in ("residual", "expected", "sigma", "measured", "suspicious")}
    departure = None if reports[0].departure is None else jnp.stack([r.departure for r in reports])
    return TrustReport(**fields, factor=reports[0].factor, departure=departure)


def _phase(z: jax.Array) -> jax.Array:
    mag = jnp.abs(z)
    return jnp.where(mag > 0, z / jnp.where(mag > 0, mag, 1), 1).astype(jnp.complex64)


@partial(jax.jit, static_argnames=("iterations",))
def fit_phase(A: LinearOperator, y: jax.Array, magnitude: jax.Array, start: jax.Array, *,
              iterations: int = 30) -> jax.Array:
    """The complex image of the given ``magnitude`` whose phase fits the data best.

    Projected gradient on ``||A x - y||^2 / 2`` over ``{x : |x| = magnitude}`` from the phase of
    ``start``: ``x <- magnitude * phase(x - A^H (A x - y))``, step 1 (``||A|| <= 1``), which never
    increases the residual (majorise-minimise). The residual of the result is (a local minimum,
    hence) close to the least a magnitude image can have: a magnitude that no phase reconciles
    with the data is inconsistent whatever its phase was.
    """
    def step(x, _):
        return magnitude * _phase(x - A.adjoint(A(x) - y)), None

    return jax.lax.scan(step, magnitude * _phase(start), None, length=iterations)[0]


def sense_trust(A: MultiCoilMRI, y: jax.Array, x: jax.Array, *, sigma: float | None = None,
                factor: float = FACTOR) -> TrustReport:
    """The report of an image ``x (ny, nx)`` of Cartesian multi-coil data ``y (coils, ky, kx)``
    on ``A`` (coil maps with ``sum_c |S_c|^2 <= 1``), against the CG-SENSE reconstruction on ``A``
    (Tikhonov 0.01, 20 iterations: the defaults of ``recon reconstruct --method sense``).

    A real ``x`` is a magnitude image (E2E-VarNet, a magnitude network): its residual is that of
    the phase that fits the data best (:func:`fit_phase` from the CG-SENSE phase), about the least
    any phase gives, so a flag is not an artefact of the missing phase; its departure map compares
    magnitudes.
    ``sigma``: noise per k-space sample, default :func:`kspace_sigma` of ``y``.
    """
    classical, _ = cg_sense(y, A.maps, A.mask, lam=_SENSE_LAM, maxiter=_SENSE_ITERATIONS, tol=_SENSE_TOL)
    x = jnp.asarray(x)
    sigma = kspace_sigma(y) if sigma is None else sigma
    if jnp.iscomplexobj(x):
        return trust_report(A, y, x, sigma=sigma, classical=classical, factor=factor)
    report = trust_report(A, y, fit_phase(A, y, x, classical), sigma=sigma, factor=factor)
    return report._replace(departure=departure_map(x, jnp.abs(classical)))


def mri_trust(image: np.ndarray, kspace: np.ndarray, mask: np.ndarray, *, sigma: float | None = None,
              whitening: np.ndarray | None = None, options: ReconOptions | None = None,
              factor: float = FACTOR) -> TrustReport:
    """:func:`sense_trust` of ``image (ny, nx)`` reconstructed from one Cartesian slice
    ``kspace (coils, ky, kx)`` with boolean ``mask`` (broadcastable to ``(ky, kx)``), on
    ``MultiCoilMRI`` with the coil maps of ``options`` (default ESPIRiT, as ``recon reconstruct``).
    ``whitening``: the pre-whitening matrix the image was reconstructed with; ``sigma`` is then
    that of the whitened data (leave it ``None`` to estimate it)."""
    mask = np.broadcast_to(np.asarray(mask, bool), np.shape(kspace)[-2:])
    y = jnp.asarray(kspace, jnp.complex64) * mask
    if whitening is not None:
        y = prewhiten(y, whitening)
    maps = coil_maps(np.asarray(y), mask, options or ReconOptions())
    return sense_trust(MultiCoilMRI(maps, jnp.asarray(mask, jnp.float32)), y, image, sigma=sigma,
                       factor=factor)


def ct_sigma(data: CTData) -> np.ndarray | None:
    """Noise standard deviation per slice ``(slices,)`` of a 2D low-dose CT file's sinogram, or None.

    The log-transformed sinogram has variance ``1 / Y`` per bin (``Y`` counts, :mod:`physics.dose`;
    a floor of one count as :func:`physics.dose.log_transform`), or ``exp(y) / I0`` from the
    sinogram where the file holds ``I0`` but no counts; sigma is the root of the mean variance
    per slice, so that ``sigma^2 m`` is the expected ``||n||^2``. None for a file without dose
    information (estimate it, or the data are noiseless).
    """
    axes = (-2, -1)
    if data.counts is not None:
        variance = np.mean(1.0 / np.maximum(data.counts.astype(np.float64), 1.0), axis=axes)
    elif data.I0 is not None:
        variance = np.mean(np.exp(data.sinogram.astype(np.float64)) / data.I0, axis=axes)
    else:
        return None
    return np.sqrt(variance).astype(np.float32)


def ct_trust(images: np.ndarray, sinogram: np.ndarray, geometry: CTGeometry, *,
             sigma: float | np.ndarray | None = None, classical: np.ndarray | None = None,
             factor: float = FACTOR) -> TrustReport:
    """The report of CT images ``(slices, ny, nx)`` in mm^-1 of 2D sinograms ``(slices, angles,
    detectors)`` (parallel or fan beam) on the projector of ``geometry``.

    ``classical`` (default: FBP, ramp filter) gives the departure map; ``sigma`` (per slice or
    one number) defaults to :func:`estimate_sigma` of the sinograms' outer detector bins and
    first and last views. FBP itself is no least-squares fit: its residual on noiseless data
    (projector and backprojector discretisation, 2.5 % of the data for a 32 x 32 Shepp-Logan)
    exceeds the noise of high doses, where the report flags even FBP; it is meant for low dose.
    """
    if geometry.kind == "cone":
        raise InvalidDataError("ct_trust: takes 2D slices (parallel or fan beam), got a cone-beam geometry")
    y = jnp.asarray(sinogram, jnp.float32)
    if classical is None:
        classical = fbp(y, geometry)
    return trust_report(ct_operator(geometry), y, jnp.asarray(images, jnp.float32), sigma=sigma,
                        classical=jnp.asarray(classical, jnp.float32), factor=factor)


def trust_fields(report: TrustReport) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The report as ``(extra, attrs)`` for :func:`recon.io.write_reconstruction`.

    Datasets ``trust/residual``, ``trust/expected_residual``, ``trust/sigma`` (float32),
    ``trust/measured`` (int32), ``trust/suspicious`` (bool), each ``(slices,)``, and
    ``trust/departure`` float32 ``(slices, *image)`` when present; root attributes
    ``trust_factor`` and ``trust_suspicious_slices`` (the flagged slice indices).
    """
    flat = lambda a, dtype: np.asarray(a, dtype).reshape(-1)  # noqa: E731
    suspicious = flat(report.suspicious, bool)
    extra = {
        "trust/residual": flat(report.residual, np.float32),
        "trust/expected_residual": flat(report.expected, np.float32),
        "trust/sigma": flat(report.sigma, np.float32),
        "trust/measured": flat(report.measured, np.int32),
        "trust/suspicious": suspicious,
    }
    if report.departure is not None:
        d = np.asarray(report.departure, np.float32)
        image_ndim = d.ndim - np.ndim(report.residual)
        extra["trust/departure"] = d.reshape(suspicious.size, *d.shape[d.ndim - image_ndim:])
    attrs = {"trust_factor": float(report.factor),
             "trust_suspicious_slices": [int(i) for i in np.flatnonzero(suspicious)]}
    return extra, attrs


def write_trust(path: str | os.PathLike, images: np.ndarray, report: TrustReport, *,
                attrs: dict[str, Any] | None = None, input_path: str | os.PathLike | None = None,
                extra: dict[str, np.ndarray] | None = None) -> None:
    """Write ``images`` with :func:`recon.io.write_reconstruction` (atomic) plus the report's
    datasets and attributes (:func:`trust_fields`); ``attrs``/``extra`` are added as given."""
    trust_extra, trust_attrs = trust_fields(report)
    write_reconstruction(path, images, attrs={**(attrs or {}), **trust_attrs}, input_path=input_path,
                         extra={**(extra or {}), **trust_extra})


def trust_figure(image: np.ndarray, classical: np.ndarray, report: TrustReport, *, index: int = 0,
                 departure_scale: float = 5.0) -> Any:
    """A matplotlib figure of one slice: image, classical reconstruction, departure map.

    The title gives the residual against the noise-only residual and the verdict.
    ``image``/``classical`` are 2D ``(ny, nx)`` (the report of 2D slices); ``index`` is the
    slice's (flat) index in the report.
    Returns the ``matplotlib.figure.Figure`` (save it with ``fig.savefig``; close it after).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if report.departure is None:
        raise InvalidDataError("trust_figure: the report has no departure map (no classical "
                               "reconstruction was given to trust_report)")
    image, classical = np.abs(np.asarray(image)), np.abs(np.asarray(classical))
    departure = np.asarray(report.departure, np.float32)
    departure = departure.reshape(-1, *departure.shape[departure.ndim - 2:])[index]
    r = float(np.asarray(report.residual).reshape(-1)[index])
    e = float(np.asarray(report.expected).reshape(-1)[index])
    flag = bool(np.asarray(report.suspicious).reshape(-1)[index])
    vmax = float(np.percentile(classical, 99.5)) or 1.0
    fig, axes = plt.subplots(1, 3, figsize=(9.6, 3.6))
    for ax, img, title in ((axes[0], image, "reconstruction"), (axes[1], classical, "classical")):
        ax.imshow(img, cmap="gray", vmin=0, vmax=vmax)
        ax.set_title(title, fontsize=9)
    axes[2].imshow(departure, cmap="inferno", vmin=0, vmax=1 / departure_scale)
    axes[2].set_title(f"|x - classical| / max x{departure_scale:g}", fontsize=9)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    verdict = "SUSPICIOUS" if flag else "consistent with the data"
    fig.suptitle(f"residual {r:.3g} vs noise {e:.3g} (x{r / e if e > 0 else np.inf:.2f}): {verdict}",
                 fontsize=10)
    fig.tight_layout()
    return fig
