"""Pydantic configs loaded from YAML, with errors that name the file, the line, the key and what was expected.

A config file holds one section per stage (``corpus:``, ``decide:``, ``tokenizer:`` ...). Each section is validated by
the pydantic model its stage declares (the models live beside the code of their stage); the stage registry
(:mod:`tokenwise.registry`) knows every section and validates whole files.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

T = TypeVar("T", bound=BaseModel)

class ConfigError(ValueError):
    """A config file that cannot be used; the message names file, line, key and what was expected."""


class BaseConfig(BaseModel):
    """Base of every stage config: unknown keys are errors, values are validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=())


class RunConfig(BaseConfig):
    """Where a run lives and how chatty it is."""

    dir: str = "runs/demo"
    seed: int = 0
    progress: bool = True


def _line_index(text: str) -> dict[tuple, int]:
    """Map a YAML key path (tuple of keys / list indices) to its 1-based line number."""
    index: dict[tuple, int] = {}

    def walk(node: yaml.Node, path: tuple) -> None:
        index[path] = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                index[path + (key.value,)] = key.start_mark.line + 1
                walk(value, path + (key.value,))
                index[path + (key.value,)] = key.start_mark.line + 1
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                walk(item, path + (i,))

    try:
        root = yaml.compose(text)
    except yaml.YAMLError:
        return index
    if root is not None:
        walk(root, ())
    return index


_SECRET_KEY = re.compile(r"(api_?key|secret|password|passwd|credential|auth|bearer)(?!_env)", re.I)
_SECRET_VALUE = re.compile(r"^(sk|pk|rk|hf|ghp|gho|xox[bp]|AKIA)[-_]?[A-Za-z0-9]", re.I)


def _looks_secret(loc: tuple, value: Any) -> bool:
    """Config errors echo the bad value; not when the key or the value looks like a credential."""
    named = any(_SECRET_KEY.search(str(p)) for p in loc)
    return named or (isinstance(value, str) and bool(_SECRET_VALUE.match(value.strip())))


def _format_errors(err: ValidationError, file: str, prefix: tuple, lines: dict[tuple, int]) -> str:
    out = []
    for e in err.errors():
        loc = prefix + tuple(e["loc"])
        line = next((lines[loc[:n]] for n in range(len(loc), 0, -1) if loc[:n] in lines), None)
        key = ".".join(str(p) for p in loc)
        where = f"{file}:{line}" if line else file
        got = e.get("input")
        got_s = "" if e["type"] == "missing" else f" (got {got!r:.80})"
        if _looks_secret(loc, got):
            got_s = " (got a value that looks like a secret; not shown)"
        msg = "unknown key; remove it or check its spelling" if e["type"] == "extra_forbidden" else e["msg"]
        out.append(f"{where}: {key}: {msg}{got_s}")
    return "\n".join(out)


def read_yaml(path: str | Path) -> tuple[dict[str, Any], dict[tuple, int]]:
    """Read a YAML mapping and its key→line index; a clear ConfigError if it is missing or not a mapping."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{path}: config file not found")
    text = p.read_text(encoding="utf-8")
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: invalid YAML: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of sections at the top level, got {type(data).__name__}")
    return data, _line_index(text)


def validate_section(data: dict[str, Any], model: type[T], file: str, section: str, lines: dict[tuple, int]) -> T:
    """Validate one section's dict with ``model``; errors carry file:line and the dotted key."""
    try:
        return model.model_validate(data.get(section) or {})
    except ValidationError as e:
        raise ConfigError(_format_errors(e, file, (section,), lines)) from None


def load_section(path: str | Path, section: str, model: type[T]) -> T:
    """Load and validate one section of a config file with its stage's model (absent section: the defaults)."""
    data, lines = read_yaml(path)
    return validate_section(data, model, str(path), section, lines)
