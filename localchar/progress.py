"""One progress-bar helper (rich) for every long loop; quiet when stderr is not a terminal."""

from __future__ import annotations

from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

console = Console(stderr=True)


class _Bar:
    def __init__(self, prog, task):
        self.prog, self.task = prog, task

    def advance(self, n: int = 1, **fields):
        if self.prog is not None:
            info = "  ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in fields.items())
            self.prog.update(self.task, advance=n, info=info)


@contextmanager
def progress(desc: str, total: int | None):
    if not console.is_terminal:
        yield _Bar(None, None)
        return
    with Progress(TextColumn("  {task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[info]}"),
                  console=console, transient=True) as prog:
        yield _Bar(prog, prog.add_task(desc, total=total, info=""))
