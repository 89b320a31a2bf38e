"""PNG figures for people to look at: reconstructions beside their reference, with error maps."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from physics.errors import OutputError

if TYPE_CHECKING:
    from recon.trust import TrustReport


def comparison_figure(path: str | os.PathLike, reference: np.ndarray, images: dict[str, np.ndarray],
                      metrics: dict[str, dict[str, float]], *, error_scale: float = 5.0,
                      trust: dict[str, TrustReport] | None = None) -> None:
    """Write a PNG: top row reference and each reconstruction, bottom row ``|x - ref|``.

    Args:
        path: output PNG, written atomically.
        reference, images: magnitude images ``(ny, nx)``; all shown on the reference's grey scale.
        metrics: per image name, a dict with ``psnr``, ``ssim`` and ``nmse`` for the titles.
        error_scale: error maps are shown magnified by this factor.
        trust: per image name (some of them), its one-slice :class:`recon.trust.TrustReport`:
            the error map's title adds the data residual against the noise-only residual and the
            verdict (red when suspicious).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    vmax = float(np.percentile(reference, 99.5))
    cols = 1 + len(images)
    fig, axes = plt.subplots(2, cols, figsize=(3.2 * cols, 6.6), squeeze=False)
    axes[0, 0].imshow(reference, cmap="gray", vmin=0, vmax=vmax)
    axes[0, 0].set_title("reference")
    axes[1, 0].axis("off")
    for j, (name, image) in enumerate(images.items(), start=1):
        m = metrics[name]
        axes[0, j].imshow(image, cmap="gray", vmin=0, vmax=vmax)
        axes[0, j].set_title(f"{name}\nPSNR {m['psnr']:.2f} dB  SSIM {m['ssim']:.3f}", fontsize=9)
        axes[1, j].imshow(np.abs(image - reference), cmap="inferno", vmin=0, vmax=vmax / error_scale)
        title, colour = f"|error| x{error_scale:g}  NMSE {m['nmse']:.2e}", "black"
        if trust is not None and name in trust:
            r = trust[name]
            ratio = float(np.asarray(r.residual).reshape(-1)[0] / np.asarray(r.expected).reshape(-1)[0])
            suspicious = bool(np.asarray(r.suspicious).reshape(-1)[0])
            title += f"\ndata residual {ratio:.2f}x noise: {'SUSPICIOUS' if suspicious else 'consistent'}"
            colour = "red" if suspicious else "black"
        axes[1, j].set_title(title, fontsize=9, color=colour)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout(h_pad=2.0)
    target = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(suffix=".png", dir=target.parent)
        os.close(fd)
    except OSError as e:
        plt.close(fig)
        raise OutputError(f"{target}: cannot write in {target.parent} ({e.strerror})") from e
    try:
        fig.savefig(tmp, dpi=110)
        os.replace(tmp, target)
    finally:
        plt.close(fig)
        if os.path.exists(tmp):
            os.remove(tmp)
