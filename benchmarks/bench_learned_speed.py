"""Training-step and inference speed, and training-step memory, of E2E-VarNet: recon-engine vs fastMRI.

Problem: the fastMRI E2E-VarNet architecture at 4 cascades (cascade U-Nets ``chans=18,
pools=4``, sensitivity U-Net ``sens_chans=8, sens_pools=4``; 10.3 M parameters), batch 1, 8
coils, 256 x 256, complex64 k-space of :func:`physics.simulation.simulate_multicoil`
undersampled by a 4x equispaced column mask with 8% centre columns
(:func:`physics.sampling.equispaced_mask`). Training step = forward + backward + Adam update
(learning rate 1e-3, no gradient clipping) of the L1 loss against the fully sampled RSS image.

- recon-engine: :class:`recon.unrolled.E2EVarNet` trained by :func:`recon.train.make_train_step`
  (``nnx.jit``), without and with ``remat=True``; inference under ``nnx.jit``. Compilation is
  excluded (``lower().compile()`` first, which fills the call's cache).
- fastMRI: ``fastmri.models.VarNet(num_cascades=4, chans=18, pools=4, sens_chans=8,
  sens_pools=4)`` with ``torch.optim.Adam``, ``torch.set_num_threads(2)``, in the same process;
  inference under ``torch.inference_mode()``.

Before timing, both outputs are checked to have the target's shape and the two models to have
the same number of parameters (fastMRI's has one more: the first cascade's data-consistency
weight, which multiplies ``k0 - k0 = 0``). Inputs differ only in layout: fastMRI takes k-space
as ``(1, coils, N, N, 2)`` float32 and a ``(1, 1, 1, N, 1)`` bool mask.

Memory of a training step (in ``extra_info``, so in ``--benchmark-json``): recon-engine, XLA's
compiled memory analysis (``temp_MiB``: activations, gradients and scratch; ``output_MiB``: the
new parameters and Adam moments, as the step's inputs are not donated); fastMRI, the peak of
bytes live above the level at the start of the step, replayed from the allocation and free
events of ``torch.profiler`` (``profile_memory=True``), on a step after the warm-up step. On
XLA:CPU ``remat=True`` saves no memory: the CPU compiler drops the optimisation barriers that
keep the recomputation in the backward pass (``OptimizationBarrierExpander`` runs before
scheduling there, after it on GPU), so the plain and remat temp sizes agree.

Run: ``.venv/bin/python -m pytest benchmarks/bench_learned_speed.py --benchmark-only``
(needs the ``peers`` extra; about 5 minutes on 2 cores).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from physics.sampling import equispaced_mask
from physics.simulation import simulate_multicoil
from recon.nets import parameter_count
from recon.train import combined_loss, make_optimizer, make_train_step
from recon.unrolled import E2EVarNet, E2EVarNetConfig

torch = pytest.importorskip("torch")
fastmri_models = pytest.importorskip("fastmri.models")

COILS, N, ACCEL, CENTRE_FRACTION = 8, 256, 4, 0.08
ARCH = {"cascades": 4, "chans": 18, "pools": 4, "sens_chans": 8, "sens_pools": 4}
LEARNING_RATE = 1e-3
ROUNDS = 2
PEER = "fastMRI VarNet"
TRAIN = f"E2E-VarNet train step (fwd+bwd+Adam), 4 cascades, {COILS} coils {N}x{N}, R={ACCEL}"
INFER = f"E2E-VarNet inference per slice, 4 cascades, {COILS} coils {N}x{N}, R={ACCEL}"
MiB = 2.0 ** 20


@pytest.fixture(scope="module")
def problem() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Masked k-space ``(1, coils, N, N)`` complex64, column mask ``(N,)`` bool, target RSS
    ``(1, N, N)`` float32."""
    sim = simulate_multicoil(N, COILS, seed=0)
    mask = equispaced_mask(N, ACCEL, CENTRE_FRACTION, seed=0)
    return (sim.kspace * mask).astype(np.complex64), mask, sim.reference


def ours(remat: bool = False) -> E2EVarNet:
    return E2EVarNet(E2EVarNetConfig(**ARCH, remat=remat), rngs=nnx.Rngs(0))


def peer():
    torch.set_num_threads(2)
    torch.manual_seed(0)
    return fastmri_models.VarNet(num_cascades=ARCH["cascades"], chans=ARCH["chans"], pools=ARCH["pools"],
                                 sens_chans=ARCH["sens_chans"], sens_pools=ARCH["sens_pools"])


def peer_inputs(problem):
    """fastMRI's layout: k-space ``(1, coils, N, N, 2)`` float32, mask ``(1, 1, 1, N, 1)`` bool."""
    kspace, mask, target = problem
    return (torch.view_as_real(torch.from_numpy(kspace)), torch.from_numpy(mask).reshape(1, 1, 1, N, 1),
            torch.from_numpy(target))


def peak_bytes(profile) -> int:
    """Peak of bytes live above the start level, from the allocation/free events of a
    ``torch.profiler.profile(profile_memory=True)`` run."""
    events = sorted((e.start_ns(), e.nbytes()) for e in profile.profiler.kineto_results.events()
                    if e.name() == "[memory]")
    return int(max(0, np.max(np.cumsum([nbytes for _, nbytes in events]))))


@pytest.mark.benchmark(group=TRAIN)
@pytest.mark.parametrize("remat", [False, True], ids=["plain", "remat"])
def test_recon_engine_train_step(benchmark, record_median, problem, remat):
    kspace, mask, target = problem
    model = ours(remat)
    optimizer = nnx.Optimizer(model, make_optimizer({"learning_rate": LEARNING_RATE, "clip_norm": None}),
                              wrt=nnx.Param)
    step = make_train_step(combined_loss({"l1": 1.0}))
    batch = {"inputs": {"masked_kspace": jnp.asarray(kspace), "mask": jnp.asarray(mask, jnp.float32)},
             "target": jnp.asarray(target)}
    memory = step.lower(model, optimizer, batch).compile().memory_analysis()
    assert nnx.eval_shape(lambda m: m(**batch["inputs"]), model).shape == target.shape
    assert np.isfinite(float(step(model, optimizer, batch)))
    benchmark.extra_info["temp_MiB"] = memory.temp_size_in_bytes / MiB
    benchmark.extra_info["output_MiB"] = memory.output_size_in_bytes / MiB
    benchmark.pedantic(lambda: step(model, optimizer, batch).block_until_ready(), rounds=ROUNDS)
    record_median("recon-engine remat" if remat else "recon-engine")


@pytest.mark.benchmark(group=TRAIN)
def test_fastmri_train_step(benchmark, record_median, problem):
    kspace, mask, target = peer_inputs(problem)
    model = peer()
    optimizer = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)

    def step():
        optimizer.zero_grad(set_to_none=True)
        out = model(kspace, mask)
        torch.nn.functional.l1_loss(out, target).backward()
        optimizer.step()
        return out.detach()

    # the same architecture: fastMRI keeps the first cascade's dead data-consistency weight
    assert sum(p.numel() for p in model.parameters()) == parameter_count(ours()) + 1
    assert step().shape == target.shape  # warm-up: Adam's moments are allocated here
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], profile_memory=True) as prof:
        step()
    benchmark.extra_info["peak_MiB"] = peak_bytes(prof) / MiB
    benchmark.pedantic(step, rounds=ROUNDS)
    record_median(PEER)


@pytest.mark.benchmark(group=INFER)
def test_recon_engine_inference(benchmark, record_median, problem):
    kspace, mask, target = problem
    infer = nnx.jit(lambda model, k, m: model(k, m))
    model, k, m = ours(), jnp.asarray(kspace), jnp.asarray(mask, jnp.float32)
    assert infer(model, k, m).block_until_ready().shape == target.shape  # compiles
    benchmark.pedantic(lambda: jax.block_until_ready(infer(model, k, m)), rounds=ROUNDS)
    record_median("recon-engine")


@pytest.mark.benchmark(group=INFER)
def test_fastmri_inference(benchmark, record_median, problem):
    kspace, mask, target = peer_inputs(problem)
    model = peer().eval()

    def infer():
        with torch.inference_mode():
            return model(kspace, mask)

    assert infer().shape == target.shape
    benchmark.pedantic(infer, rounds=ROUNDS)
    record_median(PEER)
