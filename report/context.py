"""What a report section reads (:class:`Context`) and how it says a part is missing (:class:`Unavailable`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from report.html import Section
from tokenwise.rundir import RunDir


class Unavailable(Exception):
    """Raised by a section builder when the run lacks what it needs; the message says what and why."""


@dataclass
class Context:
    """What section builders read: this run, optionally a previous run to diff against, and the command that writes
    each top-level run-dir folder (from the stage registry) for "run this first" hints."""

    run: RunDir
    previous: RunDir | None = None
    seed: int = 0
    commands: dict[str, str] = field(default_factory=dict)

    def need(self, *parts: str) -> Path:
        """A path inside the run that must exist, else Unavailable naming it and the stage that writes it."""
        p = Path(self.run.path(*parts))
        if not p.exists():
            hint = self.commands.get(parts[0], f"the stage that writes {parts[0]}/")
            raise Unavailable(f"{'/'.join(parts)} not found in {self.run.root}; run `{hint}` first")
        return p


SectionBuilder = Callable[[Context], Section]


@dataclass(frozen=True)
class ReportSection:
    """One section of the page: its id and title, the stage whose outputs it shows, and the builder."""

    id: str
    title: str
    stage: str
    build: SectionBuilder
