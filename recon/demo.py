"""``recon demo``: the whole path on k-space bundled with the package (no download).

The bundled file ``recon/data/demo_brain_8ch.h5`` is fully sampled 8-coil k-space of the brain
phantom with birdcage maps and noise (made by ``recon simulate --size 192 --coils 8 --snr-db 30
--seed 0``). The demo undersamples it 4x (fastMRI equispaced mask, 8 % centre), reconstructs it
zero-filled, by CG-SENSE, and by compressed sensing (wavelet L1 and TV), all with ESPIRiT maps,
and by the E2E-VarNet shipped in ``recon/data/e2e_varnet_small`` (trained by ``recon train
e2e_varnet_small`` on other simulated phantoms), scores each against the fully sampled RSS,
checks the E2E-VarNet image against the measured k-space (the trust report of
:func:`recon.trust.mri_trust`: the residual against the noise level), and writes ``reconstructions.h5``
(``reconstruction`` = TV, one dataset per method, ``reference``, ``mask``, the E2E-VarNet trust
fields as ``e2e_varnet_trust/...``), ``metrics.json`` and ``comparison.png`` (the trust verdict under
the E2E-VarNet column).
"""

from __future__ import annotations

import json
import os
import tempfile
from importlib import resources
from pathlib import Path

import numpy as np

from physics.errors import OutputError
from physics.sampling import equispaced_mask
from recon.figures import comparison_figure
from recon.io import open_raw, write_reconstruction
from recon.learned import default_weights, load_trained, reconstruct_learned
from recon.metrics import evaluate
from recon.pipeline import ReconOptions, reconstruct_slice
from recon.trust import mri_trust, trust_fields

DEMO_FILE = "demo_brain_8ch.h5"
ACCELERATION, CENTER_FRACTION, SEED = 4, 0.08, 0
METHODS = ("zero-filled", "sense", "l1-wavelet", "tv")


def _write_json(path: Path, data: dict) -> None:
    fd, tmp = tempfile.mkstemp(suffix=".json", dir=path.parent)
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=2)
    os.replace(tmp, path)


def run_demo(out: Path) -> dict[str, dict[str, float]]:
    """Run the demo into folder ``out`` (created) and return the metrics per method."""
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"{out}: cannot create the output folder ({e.strerror})") from e
    with resources.as_file(resources.files("recon") / "data" / DEMO_FILE) as path, open_raw(path) as raw:
        kspace, reference, sigma = raw.kspace(0), raw.reference()[0], raw.attrs.get("noise_sigma")
    mask = equispaced_mask(kspace.shape[-1], ACCELERATION, CENTER_FRACTION, seed=SEED)
    images = {method: reconstruct_slice(kspace, mask, ReconOptions(method=method)) for method in METHODS}
    images["e2e-varnet"] = reconstruct_learned(load_trained(default_weights("e2e-varnet")), kspace, mask)
    trust = {"e2e-varnet": mri_trust(images["e2e-varnet"], kspace, mask, sigma=sigma)}
    trust_extra, _ = trust_fields(trust["e2e-varnet"])
    metrics = {name: evaluate(reference[None], image[None]) for name, image in images.items()}
    extra = {name.replace("-", "_"): image[None] for name, image in images.items()}
    write_reconstruction(out / "reconstructions.h5", images["tv"][None], attrs={
        "method": "tv", "acceleration": ACCELERATION, "center_fraction": CENTER_FRACTION,
        "metrics": metrics}, extra={**extra, "reference": reference[None], "mask": mask,
                                    **{f"e2e_varnet_{k}": v for k, v in trust_extra.items()}})
    _write_json(out / "metrics.json", metrics)
    comparison_figure(out / "comparison.png", reference, images, metrics, trust=trust)
    return metrics
