"""The stage registry: every stage declared once, with the function itself, read by the CLI, the demo, the flows,
config validation, the run-dir layout and the report.

A :class:`Stage` is one library entry point ``run(config_path, run_dir) -> one-line summary`` plus what the tools
around it need: the config section it reads (and its pydantic model), the stages whose outputs it reads, the run-dir
paths it writes, the device it wants and the CLI command that runs it. Stages belong to a :class:`Group` (one CLI
sub-command group and one Prefect flow each). The list itself lives in :mod:`tokenwise.stages`; this module imports
nothing else of the project.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from tokenwise.config import BaseConfig, ConfigError, read_yaml, validate_section

StageFn = Callable[[str, str], str]
Device = Literal["cpu", "gpu"]


class LazyStageFn:
    """A stage function named by its import path (``package.module:function``), imported on its first call.

    The registry lists torch-backed stages this way, so reading it (``tokenwise --help``, config validation, a Prefect
    flow run of another group) does not import torch and transformers. ``summary`` is the function's docstring's first
    line, shown as the command's help without importing it (a test checks they agree).
    """

    def __init__(self, target: str, summary: str) -> None:
        module, _, qualname = target.partition(":")
        if not module or not qualname:
            raise ValueError(f"lazy stage target must be 'package.module:function', got {target!r}")
        self.__module__, self.__qualname__, self.__name__ = module, qualname, qualname.rsplit(".", 1)[-1]
        self.summary = summary
        self._fn: StageFn | None = None

    @property
    def __doc__(self) -> str:  # type: ignore[override]
        return self.summary

    def resolve(self) -> StageFn:
        """The function itself (imports its module)."""
        if self._fn is None:
            obj: Any = importlib.import_module(self.__module__)
            for part in self.__qualname__.split("."):
                obj = getattr(obj, part)
            self._fn = obj
        return self._fn

    def __call__(self, config_path: str, run_dir: str) -> str:
        return self.resolve()(config_path, run_dir)

    def __repr__(self) -> str:
        return f"lazy({self.__module__}:{self.__qualname__})"


def lazy(target: str, summary: str) -> LazyStageFn:
    """A :class:`LazyStageFn` for ``target`` (``package.module:function``)."""
    return LazyStageFn(target, summary)


@dataclass(frozen=True)
class Stage:
    """One stage: ``run(config_path, run_dir)`` returns a one-line summary of what it wrote.

    Attributes:
        name: Stage name (``tokenwise demo --only NAME``; the flow's task name).
        group: The group it belongs to (its CLI sub-command group and Prefect flow).
        run: The library function itself, or a :func:`lazy` reference to it (torch-backed stages).
        section: Config section it reads (None: none), validated with ``config``.
        config: The section's pydantic model.
        upstream: Names of the stages whose outputs it reads (they run first; their markers key its cache).
        writes: Run-dir paths it writes (``signals``, ``models/quality``); the run-dir layout is their union.
        device: ``gpu`` stages go to the GPU work pool (they still run on CPU when there is none).
        command: CLI words after ``tokenwise`` (``curate score``); None: no command of its own.
        demo: Part of ``tokenwise demo`` and the end-to-end flow.
    """

    name: str
    group: str
    run: StageFn
    section: str | None = None
    config: type[BaseConfig] | None = None
    upstream: tuple[str, ...] = ()
    writes: tuple[str, ...] = ()
    device: Device = "cpu"
    command: str | None = None
    demo: bool = True

    def __post_init__(self) -> None:
        if (self.section is None) != (self.config is None):
            raise ValueError(f"stage {self.name}: give both section and config, or neither")
        if self.command is not None and self.command.split()[0] != self.group:
            raise ValueError(f"stage {self.name}: command {self.command!r} must start with its group {self.group!r}")


@dataclass(frozen=True)
class Group:
    """A CLI sub-command group and a Prefect flow: its stages run in registry order.

    ``app`` is an optional typer app with the group's hand-written commands (extra options, or commands that are
    not stages, such as ``curate whatif``); every stage command it lacks gets the generic ``--config/--run`` one.
    """

    name: str
    help: str
    app: Any = None


@dataclass
class Registry:
    """Ordered stages and groups, plus config sections that belong to no stage (``run``, ``prefect``)."""

    groups: list[Group]
    stages: list[Stage]
    extra_sections: dict[str, type[BaseConfig]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._check()

    def _check(self) -> None:
        names = [s.name for s in self.stages]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"stage names registered twice: {dupes}")
        groups = {g.name for g in self.groups}
        for s in self.stages:
            if s.group not in groups:
                raise ValueError(f"stage {s.name}: unknown group {s.group!r}; registered: {sorted(groups)}")
            seen = names[: names.index(s.name)]
            late = [u for u in s.upstream if u not in seen]
            if late:
                raise ValueError(f"stage {s.name}: upstream {late} must be registered before it")
        sections: dict[str, type[BaseConfig]] = dict(self.extra_sections)
        for s in self.stages:
            if s.section and sections.setdefault(s.section, s.config) is not s.config:
                raise ValueError(f"config section {s.section!r} has two models ({s.name}: {s.config.__name__})")

    # -- lookups -------------------------------------------------------------------------------------------------

    def stage(self, name: str) -> Stage:
        """The stage named ``name``; ValueError listing the known ones otherwise."""
        for s in self.stages:
            if s.name == name:
                return s
        raise ValueError(f"unknown stage {name!r}; expected one of: {', '.join(s.name for s in self.stages)}")

    def group(self, name: str) -> Group:
        """The group named ``name``; ValueError listing the known ones otherwise."""
        for g in self.groups:
            if g.name == name:
                return g
        raise ValueError(f"unknown stage group {name!r}; expected one of: {', '.join(self.group_names())}")

    def group_names(self) -> list[str]:
        return [g.name for g in self.groups]

    def stages_of(self, group: str) -> list[Stage]:
        """The stages of one group, in registry order."""
        self.group(group)
        return [s for s in self.stages if s.group == group]

    def demo_stages(self) -> list[Stage]:
        """The stages ``tokenwise demo`` runs, in data-flow order."""
        return [s for s in self.stages if s.demo]

    def demo_groups(self) -> list[str]:
        """Groups with at least one demo stage, ordered by their first stage."""
        return list(dict.fromkeys(s.group for s in self.demo_stages()))

    def group_device(self, group: str) -> Device:
        """``gpu`` when any stage of the group wants a GPU."""
        return "gpu" if any(s.device == "gpu" for s in self.stages_of(group)) else "cpu"

    def upstream_paths(self, group: str) -> tuple[str, ...]:
        """Run-dir paths written by the stages a group's stages read directly (outside the group), in order."""
        inside = {s.name for s in self.stages_of(group)}
        wanted = {u for s in self.stages_of(group) for u in s.upstream} - inside
        return tuple(dict.fromkeys(p for s in self.stages if s.name in wanted for p in s.writes))

    def layout(self) -> dict[str, Stage]:
        """Run-dir path → the stage that writes it (first writer wins), in registry order."""
        out: dict[str, Stage] = {}
        for s in self.stages:
            for p in s.writes:
                out.setdefault(p, s)
        return out

    def writer_commands(self) -> dict[str, str]:
        """Top-level run-dir folder → ``tokenwise <command>`` of its first writer with a command (report hints)."""
        out: dict[str, str] = {}
        for path, s in self.layout().items():
            if s.command:
                out.setdefault(path.split("/")[0], f"tokenwise {s.command}")
        return out

    # -- config sections -----------------------------------------------------------------------------------------

    def sections(self) -> dict[str, type[BaseConfig]]:
        """Config section → pydantic model: every stage's section plus the extra ones."""
        out = {s.section: s.config for s in self.stages if s.section and s.config}
        return {**out, **self.extra_sections}

    def validate_file(self, path: str | Path) -> dict[str, BaseConfig]:
        """Validate every section of a config file; ConfigError naming ``file:line: section.key: message``."""
        return validate_sections(path, self.sections())

    # -- plugins and tests ---------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def added(self, stage: Stage, group: Group | None = None) -> Iterator[Registry]:
        """Register ``stage`` (and a new ``group``) for the duration of the block."""
        if group is not None:
            self.groups.append(group)
        self.stages.append(stage)
        try:
            self._check()
            yield self
        finally:
            self.stages.remove(stage)
            if group is not None:
                self.groups.remove(group)


def validate_sections(path: str | Path, models: Mapping[str, type[BaseConfig]]) -> dict[str, BaseConfig]:
    """Validate every section of a config file against ``models``; unknown sections are errors."""
    data, lines = read_yaml(path)
    unknown = [k for k in data if k not in models]
    if unknown:
        k = unknown[0]
        raise ConfigError(
            f"{path}:{lines.get((k,), '?')}: unknown section {k!r}; expected one of: {', '.join(sorted(models))}"
        )
    errors, out = [], {}
    for name in data:
        try:
            out[name] = validate_section(data, models[name], str(path), name, lines)
        except ConfigError as e:
            errors.append(str(e))
    if errors:
        raise ConfigError("\n".join(errors))
    return out
