"""recon.data: examples from raw MRI and CT files, seeded order and masks, batches, prefetch.

Files are simulated into pytest's tmp_path (32x32, 4 coils); expected values come from the files
read with plain h5py and from numpy's FFT, independently of the code under test.
"""

from __future__ import annotations

import threading
import time

import h5py
import numpy as np
import pytest

from physics.ct_geometry import parallel_beam
from physics.errors import FileFormatError, InvalidDataError, ShapeError
from recon.data import (CTSliceDataset, SliceDataset, batch_stream, collate, epoch_order, low_dose, prefetch,
                        simulated_dataset)
from recon.io import write_ct, write_kspace


@pytest.fixture(scope="module")
def sim(tmp_path_factory) -> SliceDataset:
    return simulated_dataset(tmp_path_factory.mktemp("sim"), n=6, size=32, coils=4, seed=3)


def numpy_rss(kspace: np.ndarray) -> np.ndarray:
    coil_images = np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(kspace, axes=(-2, -1)), norm="ortho"),
                                  axes=(-2, -1))
    return np.sqrt(np.sum(np.abs(coil_images) ** 2, axis=0))


def test_simulated_files_and_example_contents(sim, tmp_path):
    assert len(sim) == 6 and len(sim.files) == 6
    mtimes = [f.stat().st_mtime_ns for f in sim.files]
    again = simulated_dataset(sim.files[0].parent, n=6, size=32, coils=4, seed=3)
    assert again.files == sim.files and [f.stat().st_mtime_ns for f in sim.files] == mtimes  # reused
    ex = sim.example(2, epoch=0)
    k, m, target = ex["inputs"]["masked_kspace"], ex["inputs"]["mask"], ex["target"]
    assert k.shape == (4, 32, 32) and k.dtype == np.complex64
    assert m.shape == (32, 32) and m.dtype == np.float32 and set(np.unique(m)) == {0.0, 1.0}
    assert target.shape == (32, 32) and target.dtype == np.float32
    assert (m == m[:1]).all()  # a column mask, repeated over the rows
    with h5py.File(sim.files[2], "r") as f:
        full, reference = f["kspace"][0], f["reconstruction_rss"][0]
    np.testing.assert_array_equal(k, full * m)
    np.testing.assert_array_equal(target, reference)
    np.testing.assert_allclose(reference, numpy_rss(full), rtol=1e-4, atol=1e-6)

    # Without a reference in the file the target is the RSS of the full k-space.
    write_kspace(tmp_path / "noref.h5", full)
    plain = SliceDataset(tmp_path / "noref.h5").example(0, 0)["target"]
    np.testing.assert_allclose(plain, numpy_rss(full), rtol=1e-4, atol=1e-6)


def test_same_seed_epoch_index_same_example_other_epochs_differ(sim):
    twin = SliceDataset(sim.files, seed=3)
    masks = {}
    for epoch in (0, 1):
        for i in range(len(sim)):
            a, b = sim.example(i, epoch), twin.example(i, epoch)
            np.testing.assert_array_equal(a["inputs"]["mask"], b["inputs"]["mask"])
            np.testing.assert_array_equal(a["inputs"]["masked_kspace"], b["inputs"]["masked_kspace"])
            masks[epoch, i] = a["inputs"]["mask"][0]
    assert any((masks[0, i] != masks[1, i]).any() for i in range(len(sim)))
    assert any((masks[0, i] != masks[0, j]).any() for i in range(3) for j in range(3, 6))
    other_seed = SliceDataset(sim.files, seed=4)
    assert any((other_seed.example(i, 0)["inputs"]["mask"][0] != masks[0, i]).any() for i in range(len(sim)))
    # Nothing global: numpy's global generator does not change the examples.
    np.random.seed(0)
    np.testing.assert_array_equal(sim.example(1, 1)["inputs"]["mask"][0], masks[1, 1])


def test_epoch_order_is_a_seeded_permutation():
    a, b = epoch_order(50, 7, 0), epoch_order(50, 7, 0)
    np.testing.assert_array_equal(a, b)
    assert sorted(a) == list(range(50))
    assert (a != epoch_order(50, 7, 1)).any() and (a != epoch_order(50, 8, 0)).any()
    with pytest.raises(InvalidDataError, match="seed"):
        epoch_order(5, -1, 0)


@pytest.mark.parametrize("kind", ["random", "equispaced"])
def test_masks_have_the_requested_acceleration(sim, kind):
    ds = SliceDataset(sim.files, acceleration=4, center_fraction=0.125, mask=kind, seed=1)
    columns = np.array([ds.example(i % len(ds), epoch)["inputs"]["mask"][0]
                        for epoch in range(40) for i in range(len(ds))])
    centre = columns[:, 14:18]  # round(32 * 0.125) = 4 centre columns from (32 - 4 + 1) // 2 = 14
    assert centre.all()
    per_mask = columns.sum(axis=1)
    if kind == "equispaced":
        assert np.all(np.abs(per_mask - 8) <= 1)  # 32 / 4 columns, rounding of the spacing
    else:
        assert abs(per_mask.mean() - 8) < 0.3  # 240 draws: std of the mean ~ 0.14
        assert per_mask.std() > 0.5


def test_batch_stream_order_epochs_and_resume(sim):
    stream = list(batch_stream(sim, 2, stop=7))  # 3 batches per epoch
    assert len(stream) == 7 and stream[0]["inputs"]["masked_kspace"].shape == (2, 4, 32, 32)
    assert stream[0]["target"].shape == (2, 32, 32)
    for epoch in (0, 1):
        order = epoch_order(len(sim), sim.seed, epoch)
        targets = np.concatenate([b["target"] for b in stream[3 * epoch:3 * epoch + 3]])
        expected = np.stack([sim.example(int(i), epoch)["target"] for i in order])
        np.testing.assert_array_equal(targets, expected)  # each epoch visits every example once
    resumed = list(batch_stream(sim, 2, start=4, stop=7))
    for a, b in zip(resumed, stream[4:]):
        np.testing.assert_array_equal(a["inputs"]["mask"], b["inputs"]["mask"])
        np.testing.assert_array_equal(a["target"], b["target"])
    with pytest.raises(InvalidDataError, match="batch_size"):
        next(batch_stream(sim, 7))


def test_collate_refuses_unequal_shapes():
    a = {"inputs": {"x": np.zeros((2, 3))}, "target": np.zeros(3)}
    b = {"inputs": {"x": np.zeros((2, 4))}, "target": np.zeros(3)}
    assert collate([a, a])["inputs"]["x"].shape == (2, 2, 3)
    with pytest.raises(ShapeError, match=r"'/inputs/x' has shape \(2, 4\) in example 1"):
        collate([a, b])
    with pytest.raises(ShapeError, match="keys"):
        collate([a, {"inputs": {}, "target": np.zeros(3)}])


def test_prefetch_preserves_order_raises_in_place_and_stops():
    rng = np.random.default_rng(0)
    delays = rng.uniform(0, 0.004, size=40)

    def slow():
        for i, d in enumerate(delays):
            time.sleep(d)
            yield i

    assert list(prefetch(slow(), size=3)) == list(range(40))

    def failing():
        yield 0
        yield 1
        raise FileFormatError("file 2 is corrupt")

    got = []
    with pytest.raises(FileFormatError, match="file 2"):
        for item in prefetch(failing()):
            got.append(item)
    assert got == [0, 1]

    before = threading.active_count()
    stream = prefetch(iter(range(10**9)), size=2)
    assert next(stream) == 0 and next(stream) == 1
    stream.close()
    assert threading.active_count() == before
    with pytest.raises(InvalidDataError, match="size"):
        next(prefetch([], size=0))


def test_mri_errors(sim, tmp_path):
    with pytest.raises(FileFormatError, match="does not exist"):
        SliceDataset([sim.files[0], tmp_path / "missing.h5"])
    with h5py.File(tmp_path / "nokspace.h5", "w") as f:
        f["image"] = np.zeros((1, 4, 4), np.float32)
    with pytest.raises(FileFormatError, match="no dataset 'kspace'"):
        SliceDataset(tmp_path / "nokspace.h5")
    with pytest.raises(InvalidDataError, match="at least one file"):
        SliceDataset([])
    with pytest.raises(InvalidDataError, match="mask must be one of"):
        SliceDataset(sim.files, mask="poisson")
    with pytest.raises(InvalidDataError, match="acceleration"):
        SliceDataset(sim.files, acceleration=0.5)
    with pytest.raises(InvalidDataError, match="out of range"):
        sim.example(6, 0)
    with pytest.raises(InvalidDataError, match="epoch"):
        sim.example(0, -1)


# ----------------------------------------------------------------------------------- CT
def ct_file(path, seed: int, *, image: bool = True, detectors: int = 24):
    rng = np.random.default_rng(seed)
    g = parallel_beam((16, 16), np.linspace(0, np.pi, 12, endpoint=False), detectors, pixel_size=0.5)
    sino = rng.uniform(0.1, 2.0, size=(3, 12, detectors)).astype(np.float32)
    img = rng.uniform(0, 0.02, size=(3, 16, 16)).astype(np.float32) if image else None
    write_ct(path, sino, g, image=img)
    return path, sino, img


def test_ct_examples_and_seeded_noise(tmp_path):
    (p1, s1, i1), (p2, s2, i2) = ct_file(tmp_path / "a.h5", 0), ct_file(tmp_path / "b.h5", 1)
    clean = CTSliceDataset([p1, p2])
    assert len(clean) == 6 and clean.geometry.kind == "parallel"
    ex = clean.example(4, 0)
    np.testing.assert_array_equal(ex["inputs"]["sinogram"], s2[1])
    np.testing.assert_array_equal(ex["target"], i2[1])

    noisy = CTSliceDataset([p1, p2], noise=low_dose(1e4), seed=5)
    a, b = noisy.example(4, 0)["inputs"]["sinogram"], noisy.example(4, 0)["inputs"]["sinogram"]
    np.testing.assert_array_equal(a, b)
    assert a.dtype == np.float32 and a.shape == s2[1].shape
    assert (a != noisy.example(4, 1)["inputs"]["sinogram"]).any()
    # Poisson at I0 = 1e4: std of the log-transformed data ~ sqrt(exp(p) / I0), 1-3 % here.
    rel = (a - s2[1]) / np.sqrt(np.exp(s2[1]) / 1e4)
    assert 0.7 < rel.std() < 1.3 and abs(rel.mean()) < 0.3


def test_ct_errors(tmp_path):
    good, _, _ = ct_file(tmp_path / "a.h5", 0)
    noimage, _, _ = ct_file(tmp_path / "b.h5", 1, image=False)
    other, _, _ = ct_file(tmp_path / "c.h5", 2, detectors=20)
    with pytest.raises(FileFormatError, match="no dataset 'image'"):
        CTSliceDataset([good, noimage])
    with pytest.raises(InvalidDataError, match="one dataset, one geometry"):
        CTSliceDataset([good, other])
    with pytest.raises(FileFormatError, match="does not exist"):
        CTSliceDataset(tmp_path / "missing.h5")
    bad_hook = CTSliceDataset(good, noise=lambda s, rng: s[:-1])
    with pytest.raises(ShapeError, match="noise hook returned shape"):
        bad_hook.example(0, 0)


def test_mixed_protocols_draw_each_setting_per_example(sim):
    def masks(ds):
        return [ds.example(i % len(ds), epoch)["inputs"]["mask"][0] for epoch in range(30) for i in range(len(ds))]

    ds = SliceDataset(sim.files, acceleration=[4, 8], center_fraction=[0.125, 0.0625], seed=3)
    drawn = masks(ds)
    np.testing.assert_array_equal(drawn, masks(ds))  # the draws are functions of (seed, epoch, index)
    counts = np.array([m.sum() for m in drawn])
    assert (counts <= 5).any() and (counts >= 7).any()  # 32 / 8 = 4 and 32 / 4 = 8 columns
    kinds = SliceDataset(sim.files, acceleration=4, center_fraction=0.125, mask=["random", "equispaced"], seed=3)
    outer = [np.diff(np.flatnonzero(m[:14])) for m in masks(kinds)]  # columns left of the centre block
    regular = [len(d) > 0 and np.ptp(d) == 0 for d in outer]
    assert any(regular) and not all(regular)  # equispaced and random both occur
    with pytest.raises(InvalidDataError, match="center_fraction"):
        SliceDataset(sim.files, acceleration=[4, 8], center_fraction=[0.1, 0.1, 0.1])
    with pytest.raises(InvalidDataError, match="mask"):
        SliceDataset(sim.files, mask=["random", "radial"])


def test_simulated_dataset_varies_size_and_slices(tmp_path):
    ds = simulated_dataset(tmp_path, n=4, size=[16, 24], coils=2, slices=[1, 2], seed=5)
    shapes = [ds.example(i, 0)["target"].shape for i in range(len(ds))]
    assert len(ds) == 6  # files: 16 px 1 slice, 24 px 1 slice, 16 px 2 slices, 24 px 2 slices
    assert sorted(set(shapes)) == [(16, 16), (24, 24)]
    assert sorted(p.name.split("_")[1] for p in ds.files) == ["16px", "16px", "24px", "24px"]
