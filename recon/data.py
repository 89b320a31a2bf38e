"""Training data for learned reconstruction: examples from raw files, their order, batches, prefetch.

An *example* is a dict of numpy arrays ``{"inputs": {...}, "target": ...}``; a model is called as
``model(**example["inputs"])`` and compared with ``example["target"]``. A *batch* has the same
structure with one leading batch axis on every array (:func:`collate`).

- :class:`SliceDataset` (MRI, fastMRI-style files through :func:`recon.io.open_raw`, which must
  hold fully sampled k-space, as fastMRI's train and val files): inputs ``masked_kspace``
  complex64 ``(coils, ky, kx)`` (the k-space times the mask, zeros elsewhere) and ``mask``
  float32 ``(ky, kx)`` of 0/1 (a column mask repeated over the rows); target float32
  ``(ny, nx)``, the file's ``reconstruction_rss`` slice (fastMRI's RSS, cropped as the file
  crops it), or the RSS of the fully sampled coil images where the file has none.
- :class:`CTSliceDataset` (2D parallel- or fan-beam files through :func:`recon.io.read_ct`, held
  in memory): input ``sinogram`` float32 ``(angles, detectors)``, optionally degraded by a
  ``noise`` hook such as :func:`low_dose`; target the file's ``image`` slice, float32
  ``(ny, nx)`` in mm^-1; the shared geometry is ``dataset.geometry`` (give it to the model).
- :class:`LDCTDataset` (the same CT files, for image enhancers): input ``x``, the FBP of the
  sinogram re-acquired at a low dose; target the FBP of it at a normal dose (or noiseless), both
  float32 ``(ny, nx)`` in mm^-1.

Randomness has no hidden state: epoch ``e`` visits the examples in the order
:func:`epoch_order` ``(n, seed, e)``, and example ``i`` of epoch ``e`` draws its mask (or noise)
from a numpy ``Generator`` seeded with ``(seed, e, i)``. An example is therefore the same
whichever thread makes it and whenever, so training resumed at step ``s`` sees exactly the data
an uninterrupted run sees (:func:`batch_stream`).
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np

from physics.ct_geometry import CTGeometry
from physics.dose import low_dose_sinogram
from physics.errors import FileFormatError, InvalidDataError, ShapeError
from physics.sampling import equispaced_mask, random_mask
from physics.simulation import simulate_multicoil
from recon.fbp import fbp
from recon.io import open_raw, read_ct, write_kspace
from recon.sense import zero_filled

__all__ = ["CTSliceDataset", "Dataset", "LDCTDataset", "SliceDataset", "batch_stream", "collate",
           "epoch_order", "example_rng", "low_dose", "prefetch", "simulated_dataset"]

PathLike = str | os.PathLike
Example = dict[str, Any]
NoiseHook = Callable[[np.ndarray, np.random.Generator], np.ndarray]

# Last entropy word of each random stream, so that order and example streams never share a seed.
_ORDER_STREAM, _EXAMPLE_STREAM = 0x6F72, 0x6578
_MASKS = {"random": random_mask, "equispaced": equispaced_mask}


class Dataset(Protocol):
    """What training needs of a dataset: its size, its seed and example ``index`` of ``epoch``."""

    seed: int

    def __len__(self) -> int: ...

    def example(self, index: int, epoch: int) -> Example: ...


def _check_seed(seed: int, what: str) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InvalidDataError(f"{what} must be a non-negative integer, got {seed!r}")
    return int(seed)


def example_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    """The generator of example ``index`` in ``epoch``: a function of ``(seed, epoch, index)`` only."""
    return np.random.default_rng([seed, epoch, index, _EXAMPLE_STREAM])


def epoch_order(n: int, seed: int, epoch: int) -> np.ndarray:
    """The order in which ``epoch`` visits ``n`` examples: a permutation, int64 ``(n,)``."""
    _check_seed(epoch, "epoch")
    return np.random.default_rng([_check_seed(seed, "seed"), epoch, _ORDER_STREAM]).permutation(n)


def _files(files: Sequence[PathLike] | PathLike) -> list[Path]:
    paths = [Path(files)] if isinstance(files, (str, os.PathLike)) else [Path(f) for f in files]
    if not paths:
        raise InvalidDataError("a dataset needs at least one file, got none")
    return paths


def _check_index(index: int, n: int, where: str) -> int:
    if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or not 0 <= index < n:
        raise InvalidDataError(f"{where}: example index {index!r} out of range, the dataset has {n}")
    return int(index)


class SliceDataset:
    """Slices of fastMRI-style raw files, each with a fresh undersampling mask per epoch.

    Args:
        files: fastMRI-style HDF5 files with fully sampled ``kspace`` (slices, coils, ky, kx);
            files may differ in matrix size (train with ``batch_size`` 1 then).
        acceleration, center_fraction: of the column masks (:mod:`physics.sampling`); a sequence
            of accelerations (with one centre fraction each, or one for all) draws one pair per
            example, as fastMRI's ``MaskFunc`` does.
        mask: ``"random"`` (fastMRI ``RandomMaskFunc``) or ``"equispaced"``, or a sequence of
            them to draw one per example.
        seed: non-negative integer; with the epoch and index it fixes every mask.

    Raises:
        FileFormatError: a file is missing, not HDF5 or lacks ``kspace`` (from
            :func:`recon.io.open_raw`).
        InvalidDataError: no files, bad mask parameters, a bad seed.
    """

    def __init__(self, files: Sequence[PathLike] | PathLike, *,
                 acceleration: float | Sequence[float] = 4.0,
                 center_fraction: float | Sequence[float] = 0.08,
                 mask: Literal["random", "equispaced"] | Sequence[str] = "random", seed: int = 0):
        self.mask_types = (mask,) if isinstance(mask, str) else tuple(mask)
        if not self.mask_types or any(m not in _MASKS for m in self.mask_types):
            raise InvalidDataError(f"mask must be one of {sorted(_MASKS)} or a sequence of them, "
                                   f"got {mask!r}")
        self.accelerations = _numbers(acceleration, "acceleration")
        fractions = _numbers(center_fraction, "center_fraction")
        if len(fractions) == 1:
            fractions *= len(self.accelerations)
        if len(fractions) != len(self.accelerations):
            raise InvalidDataError(f"{len(self.accelerations)} accelerations need one center_fraction "
                                   f"each (or one for all), got {len(fractions)}")
        self.center_fractions = fractions
        self.files = _files(files)
        self.seed = _check_seed(seed, "seed")
        slices = []
        for k, path in enumerate(self.files):
            with open_raw(path) as raw:
                slices += [(k, s) for s in range(raw.num_slices)]
                for m in self.mask_types:  # validates every combination on this width
                    for r, c in zip(self.accelerations, self.center_fractions):
                        _MASKS[m](raw.shape[-1], r, c, seed=0)
        self._slices = slices

    def __len__(self) -> int:
        return len(self._slices)

    def example(self, index: int, epoch: int) -> Example:
        """Example ``index`` of ``epoch`` (see the module docstring for its arrays)."""
        index = _check_index(index, len(self), "SliceDataset")
        k, s = self._slices[index]
        rng = example_rng(self.seed, _check_seed(epoch, "epoch"), index)
        with open_raw(self.files[k]) as raw:
            kspace = raw.kspace(s)
            reference = raw.reference()
        # draws only where there is a choice, so single-setting datasets keep their masks
        m = self.mask_types[rng.integers(len(self.mask_types))] if len(self.mask_types) > 1 else self.mask_types[0]
        j = rng.integers(len(self.accelerations)) if len(self.accelerations) > 1 else 0
        columns = _MASKS[m](kspace.shape[-1], self.accelerations[j], self.center_fractions[j], seed=rng)
        target = np.asarray(zero_filled(kspace)) if reference is None else reference[s]
        return {"inputs": {"masked_kspace": kspace * columns.astype(np.complex64),
                           "mask": np.broadcast_to(columns.astype(np.float32), kspace.shape[-2:]).copy()},
                "target": target.astype(np.float32)}

    def __repr__(self) -> str:
        setting = ", ".join(f"x{r:g} centre {c:g}" for r, c in zip(self.accelerations, self.center_fractions))
        return (f"SliceDataset({len(self.files)} files, {len(self)} slices, {'/'.join(self.mask_types)} "
                f"masks {setting}, seed {self.seed})")


def _numbers(value: float | Sequence[float], what: str) -> tuple[float, ...]:
    values = (value,) if isinstance(value, (int, float)) else tuple(value)
    if not values or any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in values):
        raise InvalidDataError(f"{what} must be a number or a non-empty sequence of numbers, got {value!r}")
    return values


class CTSliceDataset:
    """Slices of 2D CT files (sinogram -> reference image), optionally with seeded extra noise.

    Args:
        files: CT files (:func:`recon.io.read_ct`) of one parallel- or fan-beam geometry, each
            with a reference ``image``.
        noise: ``noise(sinogram, rng) -> sinogram`` applied to every input sinogram
            ``(angles, detectors)`` with the example's generator, e.g. :func:`low_dose`; ``None``
            keeps the file's sinogram.
        seed: non-negative integer; with the epoch and index it fixes the noise.

    Raises:
        FileFormatError: a file is missing or invalid, or has no ``image``.
        InvalidDataError: no files, a cone-beam file, files of different geometries, a bad seed.
    """

    def __init__(self, files: Sequence[PathLike] | PathLike, *, noise: NoiseHook | None = None,
                 seed: int = 0):
        self.files = _files(files)
        self.seed = _check_seed(seed, "seed")
        self.noise = noise
        sinograms, images, geometries = [], [], []
        for path in self.files:
            data = read_ct(path)
            if data.geometry.kind == "cone":
                raise InvalidDataError(f"{path}: cone-beam data; CTSliceDataset takes 2D slices "
                                       "(parallel or fan beam)")
            if data.image is None:
                raise FileFormatError(f"{path}: no dataset 'image', the reference image a training "
                                      "target needs")
            if geometries and data.geometry != geometries[0]:
                raise InvalidDataError(f"{path}: geometry {data.geometry} differs from the geometry "
                                       f"{geometries[0]} of {self.files[0]}; one dataset, one geometry")
            geometries.append(data.geometry)
            sinograms.append(data.sinogram)
            images.append(data.image)
        self.geometry: CTGeometry = geometries[0]
        self._sinograms = np.concatenate(sinograms)  # (slices, angles, detectors)
        self._images = np.concatenate(images)  # (slices, ny, nx)

    def __len__(self) -> int:
        return len(self._sinograms)

    def example(self, index: int, epoch: int) -> Example:
        """Example ``index`` of ``epoch``: ``{"inputs": {"sinogram"}, "target"}``."""
        index = _check_index(index, len(self), "CTSliceDataset")
        sinogram = self._sinograms[index]
        if self.noise is not None:
            noisy = np.asarray(self.noise(sinogram.copy(), example_rng(self.seed, _check_seed(epoch, "epoch"),
                                                                       index)))
            if noisy.shape != sinogram.shape:
                raise ShapeError(f"the noise hook returned shape {noisy.shape}, expected the "
                                 f"sinogram's {sinogram.shape}")
            sinogram = noisy.astype(np.float32)
        return {"inputs": {"sinogram": sinogram.copy()}, "target": self._images[index].copy()}

    def __repr__(self) -> str:
        return (f"CTSliceDataset({len(self.files)} files, {len(self)} slices, {self.geometry.kind} "
                f"beam, noise {self.noise!r}, seed {self.seed})")


class LDCTDataset:
    """Low-dose CT enhancement pairs: FBP of a low-dose sinogram -> FBP of a normal-dose one.

    Each example re-acquires the file's sinogram (exact line integrals, e.g. analytic phantom
    sinograms) twice with Poisson noise drawn from its ``(seed, epoch, index)`` generator
    (:func:`low_dose`): at ``dose`` photons per bin for the input and at ``normal_dose`` for the
    target (``None``: the noiseless sinogram), each reconstructed by :func:`recon.fbp.fbp` with
    ``filter``. ``{"inputs": {"x": (ny, nx)}, "target": (ny, nx)}``, float32 in mm^-1; the
    geometry is ``dataset.geometry``.

    Args:
        files: CT files of one parallel- or fan-beam geometry (as :class:`CTSliceDataset`).
        dose: incident photons per bin ``I0`` of the input (> 0).
        normal_dose: ``I0`` of the target (> ``dose``), or ``None``.
        filter: FBP filter, one of :data:`recon.fbp.FILTERS`.
        seed: non-negative integer; with the epoch and index it fixes the noise.

    Raises:
        FileFormatError, InvalidDataError: as :class:`CTSliceDataset`; bad doses or filter.
    """

    def __init__(self, files: Sequence[PathLike] | PathLike, *, dose: float, normal_dose: float | None = None,
                 filter: str = "hann", seed: int = 0):
        self.slices = CTSliceDataset(files, seed=seed)
        self.seed, self.geometry, self.filter = self.slices.seed, self.slices.geometry, filter
        for name, value in (("dose", dose), ("normal_dose", dose if normal_dose is None else normal_dose)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < np.inf:
                raise InvalidDataError(f"LDCTDataset: {name} must be a finite number of photons > 0, "
                                       f"got {value!r}")
        if normal_dose is not None and normal_dose <= dose:
            raise InvalidDataError(f"LDCTDataset: normal_dose ({normal_dose:g}) must exceed dose ({dose:g})")
        self.dose, self.normal_dose = dose, normal_dose
        fbp(np.zeros(self.geometry.sinogram_shape, np.float32), self.geometry, filter=filter)  # validates

    def __len__(self) -> int:
        return len(self.slices)

    def example(self, index: int, epoch: int) -> Example:
        """Example ``index`` of ``epoch``: ``{"inputs": {"x"}, "target"}``."""
        sinogram = self.slices.example(index, epoch)["inputs"]["sinogram"]
        rng = example_rng(self.seed, _check_seed(epoch, "epoch"), int(index))
        low = low_dose(self.dose)(sinogram, rng)
        normal = sinogram if self.normal_dose is None else low_dose(self.normal_dose)(sinogram, rng)
        x, target = np.asarray(fbp(np.stack([low, normal]), self.geometry, filter=self.filter))
        return {"inputs": {"x": x.copy()}, "target": target.copy()}

    def __repr__(self) -> str:
        return (f"LDCTDataset({len(self.slices.files)} files, {len(self)} slices, dose {self.dose:g} -> "
                f"{'noiseless' if self.normal_dose is None else f'{self.normal_dose:g}'}, "
                f"{self.filter} FBP, seed {self.seed})")


def low_dose(I0: float, *, electronic_sigma: float = 0.0) -> NoiseHook:
    """A :class:`CTSliceDataset` noise hook: the sinogram re-acquired at ``I0`` photons per bin.

    ``-log(max(Y, 1) / I0)`` with ``Y ~ Poisson(I0 exp(-p)) + N(0, electronic_sigma^2)``
    (:func:`physics.dose.low_dose_sinogram`), the noise drawn from the example's generator.
    """

    def hook(sinogram: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        key = int(rng.integers(2**31 - 1))
        return np.asarray(low_dose_sinogram(sinogram, I0, key=key, electronic_sigma=electronic_sigma))

    return hook


def collate(examples: Sequence[Example]) -> Example:
    """Stack examples of equal structure and shapes into one batch (a new leading axis).

    Raises:
        ShapeError: examples differ in their keys or in the shape of an array (both named).
    """
    if not examples:
        raise InvalidDataError("collate: no examples to batch")

    def stack(items: list[Any], where: str) -> Any:
        first = items[0]
        if isinstance(first, dict):
            for k, item in enumerate(items):
                if not isinstance(item, dict) or item.keys() != first.keys():
                    raise ShapeError(f"collate: example {k} has keys {sorted(item)} at '{where}', "
                                     f"example 0 has {sorted(first)}")
            return {key: stack([item[key] for item in items], f"{where}/{key}") for key in first}
        arrays = [np.asarray(item) for item in items]
        for k, a in enumerate(arrays):
            if a.shape != arrays[0].shape:
                raise ShapeError(f"collate: '{where}' has shape {a.shape} in example {k} but "
                                 f"{arrays[0].shape} in example 0; a batch needs equal shapes")
        return np.stack(arrays)

    return stack(list(examples), "")


def batch_stream(dataset: Dataset, batch_size: int, *, start: int = 0,
                 stop: int | None = None) -> Iterator[Example]:
    """Batches of training steps ``start, start + 1, ...`` (up to ``stop``, excluded, or forever).

    Step ``s`` is batch ``s % B`` of epoch ``s // B``, ``B = len(dataset) // batch_size`` (the
    examples left over at the end of an epoch are skipped), taken in :func:`epoch_order`.

    Raises:
        InvalidDataError: ``batch_size`` not in ``[1, len(dataset)]``, a negative ``start``.
    """
    n = len(dataset)
    if (isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer))
            or not 1 <= batch_size <= n):
        raise InvalidDataError(f"batch_size must be an integer in [1, {n}] (the dataset's size), "
                               f"got {batch_size!r}")
    _check_seed(start, "start step")
    per_epoch = n // batch_size
    step = start
    while stop is None or step < stop:
        epoch, k = divmod(step, per_epoch)
        indices = epoch_order(n, dataset.seed, epoch)[k * batch_size:(k + 1) * batch_size]
        yield collate([dataset.example(int(i), epoch) for i in indices])
        step += 1


def prefetch(items: Iterable[Any], size: int = 2) -> Iterator[Any]:
    """The items of ``items``, in order, made ahead by a background thread (at most ``size`` ahead).

    An exception raised while making an item is raised here, at that item. Closing the returned
    generator (or leaving a ``for`` loop over it) stops the thread.
    """
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise InvalidDataError(f"prefetch size must be a positive integer, got {size!r}")
    ready: queue.Queue = queue.Queue(maxsize=size)
    stop = threading.Event()

    def put(entry: tuple[str, Any]) -> bool:
        while not stop.is_set():
            try:
                ready.put(entry, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put(("item", item)):
                    return
            put(("end", None))
        except BaseException as e:  # handed to the consumer
            put(("error", e))

    thread = threading.Thread(target=produce, name="recon-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            kind, value = ready.get()
            if kind == "end":
                return
            if kind == "error":
                raise value
            yield value
    finally:
        stop.set()
        thread.join()


def simulated_dataset(folder: PathLike, *, n: int, size: int | Sequence[int] = 32, coils: int = 4,
                      seed: int = 0, snr_db: float = 30.0, slices: int | Sequence[int] = 1,
                      **options: Any) -> SliceDataset:
    """A :class:`SliceDataset` of ``n`` simulated fastMRI-style files in ``folder``.

    File ``i`` holds :func:`physics.simulation.simulate_multicoil` ``(size, coils, slices)`` with a
    seed drawn from ``(seed, i)``: k-space and ``reconstruction_rss``. ``slices`` > 1 takes the
    slices of a 3D phantom with 3D coil maps. A sequence of sizes (or of slice counts) varies them
    over the files: file ``i`` has ``size[i % len(size)]`` and ``slices[(i // len(size)) %
    len(slices)]``. Files already there under the same name (the name carries every parameter)
    are used as they are.

    Args:
        folder: an existing folder.
        options: keyword arguments of :class:`SliceDataset` (``acceleration``, ``center_fraction``,
            ``mask``); its ``seed`` is ``seed``.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InvalidDataError(f"simulated_dataset: folder {folder} does not exist")
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise InvalidDataError(f"simulated_dataset: n must be a positive integer, got {n!r}")
    seed = _check_seed(seed, "seed")
    sizes, depths = _numbers(size, "size"), _numbers(slices, "slices")
    files = []
    for i in range(n):
        size_i, depth = int(sizes[i % len(sizes)]), int(depths[(i // len(sizes)) % len(depths)])
        stack = "" if depth == 1 else f"{depth}slices_"
        path = folder / f"simulated_{size_i}px_{coils}coils_{stack}{snr_db:g}dB_seed{seed}_{i:04d}.h5"
        if not path.exists():
            file_seed = int(np.random.SeedSequence([seed, i]).generate_state(1)[0])
            sim = simulate_multicoil(size_i, coils, depth, snr_db=snr_db, seed=file_seed)
            write_kspace(path, sim.kspace, reference=sim.reference, attrs={
                "source": "recon.data.simulated_dataset: brain phantom, birdcage coil maps",
                "snr_db": snr_db, "noise_sigma": sim.sigma, "seed": file_seed})
        files.append(path)
    return SliceDataset(files, seed=seed, **options)
