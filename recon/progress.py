"""The one progress bar of recon-engine (rich, on stderr, shown only on a terminal)."""

from __future__ import annotations


def progress_bar(what: str, *fields: str, enabled: bool = True):
    """A ``rich.progress.Progress`` labelled ``what``; ``fields`` are extra text columns such as
    ``"loss {task.fields[loss]:.4g}"``. Disabled when ``enabled`` is false or stderr is no tty."""
    from rich.console import Console
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                               TimeRemainingColumn)

    console = Console(stderr=True)
    return Progress(TextColumn(what), BarColumn(), MofNCompleteColumn(), *map(TextColumn, fields),
                    TimeElapsedColumn(), TimeRemainingColumn(), console=console,
                    disable=not (enabled and console.is_terminal))
