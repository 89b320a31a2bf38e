"""Shared pieces of the benchmark suites: per-group medians and their ratios to recon-engine.

A benchmark records its median with ``record_median("SigPy")`` after ``benchmark(...)``; entries
of the same pytest-benchmark group are compared with the one labelled :data:`OURS`, and the
ratios are written into ``extra_info`` (so they reach ``--benchmark-json``) and printed at the
end of the run.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

OURS = "recon-engine"
MEDIANS = pytest.StashKey[dict[str, dict[str, float]]]()


@pytest.fixture
def record_median(request: pytest.FixtureRequest, benchmark) -> Callable[[str], None]:
    """Call after ``benchmark(...)``: file its median (s) under ``label`` in its group."""

    def record(label: str) -> None:
        if benchmark.stats is None:  # --benchmark-disable: nothing was timed
            return
        median = benchmark.stats.stats.median
        table = request.config.stash.setdefault(MEDIANS, {}).setdefault(benchmark.group, {})
        table[label] = median
        benchmark.extra_info["label"] = label
        benchmark.extra_info["median_s"] = median
        if OURS in table and label != OURS:
            benchmark.extra_info[f"median_over_{OURS}"] = median / table[OURS]

    return record


def pytest_terminal_summary(terminalreporter, config: pytest.Config) -> None:
    tables = config.stash.get(MEDIANS, {})
    lines = []
    for group, table in tables.items():
        if OURS not in table:
            continue
        ours = table[OURS]
        for label, median in table.items():
            if label != OURS:
                lines.append(f"{group}: {label} {median * 1e3:.2f} ms / {OURS} {ours * 1e3:.2f} ms "
                             f"= {median / ours:.2f}x (median; > 1 means {OURS} is faster)")
    if lines:
        terminalreporter.section("speed ratios")
        for line in lines:
            terminalreporter.write_line(line)
    quality = _quality_tables()
    if quality:
        terminalreporter.section("quality (fastMRI PSNR dB / SSIM against the fully sampled RSS)")
        for group, table in quality.items():
            row = "  ".join(f"{m}: {s['psnr']:.2f} / {s['ssim']:.3f}" for m, s in table.items())
            terminalreporter.write_line(f"{group}: {row}")


def _quality_tables() -> dict:
    """The QUALITY tables filled by benchmark modules that define one."""
    import sys

    tables: dict = {}
    for name, module in list(sys.modules.items()):
        if name.split(".")[-1].startswith("bench_") and isinstance(getattr(module, "QUALITY", None), dict):
            tables.update(module.QUALITY)
    return tables
