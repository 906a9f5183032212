"""Run-form knobs → the effective settings of a flow run: validated, written beside its outputs, published.

A knob (a field declared with :func:`flows.params.knob`) names a config key in a small path language:
``section.key`` walks mappings, ``[N]`` picks a list item, ``[k=v]`` every list item whose ``k`` is ``v`` and
``{field}`` is the value of another (selector) field. A knob's deployment default is its key's value in the config the
deployment was served with (:func:`form_defaults`); at run time a blank field, or one left at that default, means "the
config's value", so a config edited after `tokenwise prefect up` still wins over a stale form. What remains are the
overrides: applied to the config's data, the touched sections validated with the registry's section models
(``run form: section.key: message`` on a bad value, before anything is written), written as
``<run>/.flows/<group>-config.yaml`` (the file the stages then read, so a changed knob changes the cache key and the
same value hits the cache) beside ``<run>/.flows/<group>-settings.yaml``, and published as a markdown artifact.
"""

from __future__ import annotations

import copy
import dataclasses
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tokenwise.config import ConfigError, read_yaml, validate_section
from tokenwise.rundir import RunDir, atomic_open, hash_obj
from tokenwise.stages import REGISTRY

FORM = "run form"  # stands where a file:line would: the value came from the Run form, not the config file
_PART = re.compile(r"[^.\[\]]+|\[[^\]]*\]")
MISSING = object()


class KnobError(ValueError):
    """A run-form value that cannot be applied; the message starts with ``run form: section.key:``."""


@dataclass(frozen=True)
class Knob:
    """One run-form field and the config key it sets (see the module docstring for the key syntax)."""

    field: str
    key: str
    select_by: str | None = None
    assign: bool = False
    null_if: tuple[Any, ...] | None = None
    selector: bool = False
    fill: bool = True

    @property
    def section(self) -> str:
        return self.key.split(".", 1)[0]


@dataclass
class Settings:
    """What a flow run works with: the config it was given, its overrides and the config the stages read."""

    group: str
    config_path: str
    stage_config: str
    overrides: dict[str, Any] = field(default_factory=dict)  # form field -> value that changed the config
    knobs: dict[str, Any] = field(default_factory=dict)  # form field -> effective value
    sections: dict[str, Any] = field(default_factory=dict)  # the group's validated sections (JSON-able)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def knobs_of(model: type) -> list[Knob]:
    """The knobs of a params model, in field order (fields without a ``config_key`` are not knobs)."""
    out = []
    for name, info in model.model_fields.items():
        extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
        if "config_key" in extra:
            null_if = extra.get("null_if")
            out.append(
                Knob(
                    name,
                    str(extra["config_key"]),
                    select_by=extra.get("select_by"),
                    assign=bool(extra.get("assign")),
                    null_if=tuple(null_if) if null_if else None,
                    selector=bool(extra.get("selector")),
                    fill=bool(extra.get("fill", True)),
                )
            )
    return out


# -- the key language -------------------------------------------------------------------------------------------------


def parse_key(key: str) -> list[Any]:
    """``sources[type=gettext].languages`` → ``["sources", ("type", "gettext"), "languages"]`` (``[0]`` → 0)."""
    parts: list[Any] = []
    for tok in _PART.findall(key):
        if not tok.startswith("["):
            parts.append(tok)
        elif "=" in tok:
            k, _, v = tok[1:-1].partition("=")
            parts.append((k.strip(), v.strip()))
        else:
            parts.append(int(tok[1:-1]))
    return parts


def _matches(node: Any, part: Any) -> list[Any]:
    """The children of ``node`` that ``part`` names (a key, an index, or every ``k=v`` list item)."""
    if isinstance(part, str):
        return [node[part]] if isinstance(node, dict) and part in node else []
    if isinstance(part, int):
        return [node[part]] if isinstance(node, list) and -len(node) <= part < len(node) else []
    k, v = part
    return [x for x in node if isinstance(x, dict) and str(x.get(k)) == v] if isinstance(node, list) else []


def read_key(data: dict[str, Any], key: str) -> Any:
    """The value at ``key`` (the first match of each selector), or ``MISSING``."""
    node: Any = data
    for part in parse_key(key):
        found = _matches(node, part)
        if not found:
            return MISSING
        node = found[0]
    return node


def set_key(data: dict[str, Any], key: str, value: Any) -> int:
    """Set ``key`` to ``value`` everywhere its selectors match; returns how many places changed (KnobError if none).

    A missing last key of a mapping is created (a field the config leaves at its default).
    """
    parts = parse_key(key)
    nodes: list[Any] = [data]
    for depth, part in enumerate(parts[:-1]):
        nodes = [child for n in nodes for child in _matches(n, part)]
        if not nodes:
            where = _render(parts[: depth + 1])
            raise KnobError(f"{FORM}: {where}: not in the config ({_choices(data, parts[:depth], part)})")
    last, changed = parts[-1], 0
    for node in nodes:
        if isinstance(last, str) and isinstance(node, dict):
            changed += node.get(last, MISSING) != value
            node[last] = copy.deepcopy(value)
        elif isinstance(last, int) and isinstance(node, list) and -len(node) <= last < len(node):
            changed += node[last] != value
            node[last] = copy.deepcopy(value)
        else:
            raise KnobError(f"{FORM}: {key}: cannot be set on {type(node).__name__} {node!r:.80}")
    return changed


def _render(parts: list[Any]) -> str:
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else f"[{p[0]}={p[1]}]" if isinstance(p, tuple) else f".{p}"
    return out.lstrip(".")


def _choices(data: dict[str, Any], parent: list[Any], part: Any) -> str:
    """What the config has where ``part`` found nothing (for the error message)."""
    node = read_key(data, _render(parent)) if parent else data
    if isinstance(part, tuple) and isinstance(node, list):
        have = [str(x.get(part[0])) for x in node if isinstance(x, dict)]
        return f"no entry with {part[0]}={part[1]}; the config has {part[0]}: {', '.join(have) or 'none'}"
    if isinstance(node, dict):
        return f"the config has: {', '.join(map(str, node)) or 'nothing'}"
    return "the config has no such key"


# -- defaults and overrides -------------------------------------------------------------------------------------------


def validated_data(config_path: str) -> dict[str, Any]:
    """Every config section validated and dumped with its defaults filled in (JSON-able).

    Sections the file leaves out are their models' defaults where those validate (``decide:``), else absent.
    """
    out = {name: model.model_dump(mode="json") for name, model in REGISTRY.validate_file(config_path).items()}
    for name, model in REGISTRY.sections().items():
        if name not in out:
            try:
                out[name] = model().model_dump(mode="json")
            except ValueError:  # a required field (corpus.sources, measure.stacks): no default section
                pass
    return out


def _with_vars(key: str, variables: dict[str, Any]) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: str(variables.get(m.group(1), m.group(0))), key)


def knob_value(knob: Knob, data: dict[str, Any], variables: dict[str, Any]) -> Any:
    """A knob's value in (validated) config data, as its form field holds it; None when absent."""
    if knob.assign:
        return None
    value = read_key(data, _with_vars(knob.key, variables))
    if value is MISSING:
        return None
    if knob.select_by is not None and isinstance(value, list):
        return [str(x.get(knob.select_by)) for x in value if isinstance(x, dict)]
    if knob.null_if is not None and value is None:
        return list(knob.null_if)
    return value


def _selector_vars(knobs: list[Knob], data: dict[str, Any], form: dict[str, Any]) -> dict[str, Any]:
    return {k.field: form.get(k.field) or knob_value(k, data, {}) for k in knobs if k.selector}


def form_defaults(model: type, config_path: str) -> dict[str, Any]:
    """Each knob's value in ``config_path`` (the deployment's Run form starts with these); None where absent."""
    try:
        data = validated_data(config_path)
    except ConfigError:  # an invalid config still gets served: its runs fail with the file:line message
        return {}
    knobs = knobs_of(model)
    variables = _selector_vars(knobs, data, {})
    return {k.field: knob_value(k, data, variables) for k in knobs if k.fill}


def form_overrides(model: type, form: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
    """The knob values a run changes: set (not None) and not left at the deployment's default."""
    return {
        k.field: form[k.field]
        for k in knobs_of(model)
        if form.get(k.field) is not None and (k.field not in defaults or form[k.field] != defaults[k.field])
    }


def apply_overrides(
    model: type, raw: dict[str, Any], full: dict[str, Any], overrides: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Apply ``overrides`` to a copy of the config's ``raw`` data; returns (data, the overrides that changed it).

    ``full`` is the validated data (defaults filled in): a section whose key is absent from ``raw`` is taken from it.
    """
    knobs = knobs_of(model)
    data = copy.deepcopy(raw)
    variables = _selector_vars(knobs, full, overrides)
    for knob in knobs:
        if knob.selector and knob.field in overrides:
            _check_selector(knob, full, overrides[knob.field])
    changed: dict[str, Any] = {}
    for knob in knobs:
        if knob.field not in overrides or knob.selector:
            continue
        value = overrides[knob.field]
        for key, val in _assignments(knob, value, variables, full):
            if _set_or_fill(data, full, knob.section, key, val):
                changed[knob.field] = value
    if changed:  # a selector given in the form is part of what changed (which entry the values went to)
        changed = {k.field: overrides[k.field] for k in knobs if k.selector and k.field in overrides} | changed
    return data, changed


def _check_selector(knob: Knob, full: dict[str, Any], value: Any) -> None:
    """A selector names an existing entry (``tokenizer_name: multi8k`` must be one of the config's train names)."""
    parts = parse_key(knob.key)
    listing, attr = read_key(full, _render(parts[:-2])), parts[-1]
    names = [str(x.get(attr)) for x in listing] if isinstance(listing, list) else []
    if str(value) not in names:
        where = _render(parts[:-2])
        raise KnobError(f"{FORM}: {where}: no entry with {attr}={value}; the config has {attr}: {', '.join(names)}")


def _assignments(knob: Knob, value: Any, variables: dict[str, Any], full: dict[str, Any]) -> list[tuple[str, Any]]:
    """(config key, value) pairs one knob value sets."""
    if knob.assign:
        out = []
        for item in value:
            name, sep, raw = str(item).partition("=")
            if not sep or not name.strip():
                raise KnobError(f"{FORM}: {knob.key}: {item!r} is not name=value (field {knob.field})")
            parsed = None if raw.strip().lower() in {"none", "null", ""} else yaml.safe_load(raw)
            out.append((knob.key.replace("{" + _var(knob.key) + "}", name.strip()), parsed))
        return out
    key = _with_vars(knob.key, variables)
    if knob.select_by is not None:
        return [(key, _selected(knob, key, value, full))]
    if knob.null_if is not None and list(value) == list(knob.null_if):
        return [(key, None)]
    return [(key, value)]


def _var(key: str) -> str:
    m = re.search(r"\{(\w+)\}", key)
    return m.group(1) if m else ""


def _selected(knob: Knob, key: str, names: list[str], full: dict[str, Any]) -> list[Any]:
    """The config's list items whose ``select_by`` is in ``names`` (config order); KnobError naming unknown ones."""
    items = read_key(full, key)
    have = [str(x.get(knob.select_by)) for x in items] if isinstance(items, list) else []
    unknown = [n for n in names if n not in have]
    if unknown:
        raise KnobError(f"{FORM}: {key}: unknown {', '.join(unknown)}; the config has: {', '.join(have)}")
    return [x for x in items if str(x.get(knob.select_by)) in set(names)]


def _set_or_fill(data: dict[str, Any], full: dict[str, Any], section: str, key: str, value: Any) -> bool:
    """Set ``key`` in the config's own data; when its path is absent there, start that section from the defaults."""
    try:
        return set_key(data, key, value) > 0
    except KnobError:
        if section not in full:
            raise KnobError(f"{FORM}: {section}: the config has no `{section}:` section to change") from None
        if data.get(section) == full[section]:
            raise
        data[section] = copy.deepcopy(full[section])
        return set_key(data, key, value) > 0


# -- resolving a run's settings ---------------------------------------------------------------------------------------


def resolve(
    group: str, model: type, config_path: str, run_dir: str, overrides: dict[str, Any]
) -> tuple[Settings, dict[str, Any]]:
    """The effective settings of a run and the config data the stages get; validated, nothing written.

    Raises ConfigError (file:line) for a bad config file and KnobError (``run form: section.key: message``) for a
    form value that does not apply or does not validate with its section's model.
    """
    raw, _ = read_yaml(config_path)
    full = validated_data(config_path)
    knobs = knobs_of(model)
    data, changed = apply_overrides(model, raw, full, overrides)
    touched = sorted({k.section for k in knobs if k.field in changed})
    models = REGISTRY.sections()
    effective, errors = dict(full), []
    for name in touched:
        try:
            effective[name] = validate_section(data, models[name], FORM, name, {}).model_dump(mode="json")
        except ConfigError as e:
            errors.append(str(e))
    if errors:
        raise KnobError("\n".join(errors))
    variables = _selector_vars(knobs, effective, overrides)
    values = {k.field: variables[k.field] if k.selector else knob_value(k, effective, variables)
              for k in knobs if not k.assign}  # fmt: skip
    values |= {k.field: changed[k.field] for k in knobs if k.assign and k.field in changed}
    own = [s.section for s in REGISTRY.stages_of(group) if s.section] if group in REGISTRY.group_names() else []
    settings = Settings(
        group,
        config_path,
        effective_config_path(group, run_dir, data) if changed else config_path,
        overrides=changed,
        knobs=values,
        sections={name: effective[name] for name in dict.fromkeys([*own, *touched]) if name in effective},
    )
    return settings, data


def effective_config_path(group: str, run_dir: str, data: dict[str, Any]) -> str:
    """Where the stages' config lives: ``<run>/.flows/<group>-config.yaml``, or a local file for a remote run dir."""
    if "://" in run_dir:  # the stages read configs with local file APIs; the run dir gets a copy
        return str(Path(tempfile.gettempdir()) / "tokenwise-configs" / f"{group}-{hash_obj(data)[:16]}.yaml")
    return RunDir(run_dir).path(".flows", f"{group}-config.yaml")


def write_settings(settings: Settings, data: dict[str, Any], run_dir: str, flow_run: str | None = None) -> str:
    """Write the effective config (when there are overrides) and ``<run>/.flows/<group>-settings.yaml``; its path."""
    run = RunDir(run_dir)
    group = settings.group
    if settings.stage_config != settings.config_path:
        header = (
            f"# Effective config of a tokenwise `{group}` flow run: {settings.config_path} plus the Run form's\n"
            f"# values {settings.overrides}. Generated; edit the config or the form, not this file.\n"
        )
        body = header + yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
        targets = [settings.stage_config]
        if "://" in run_dir:
            Path(settings.stage_config).parent.mkdir(parents=True, exist_ok=True)
            targets.append(run.path(".flows", f"{group}-config.yaml"))
        for target in targets:
            with atomic_open(target, "w") as f:
                f.write(body)
    out = run.path(".flows", f"{group}-settings.yaml")
    doc = {"flow_run": flow_run, **settings.as_dict()}
    with atomic_open(out, "w") as f:
        f.write(f"# Effective settings of a tokenwise `{group}` flow run (config + Run form); the stages read "
                "stage_config.\n")  # fmt: skip
        f.write(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True))
    return out


def settings_markdown(settings: Settings, settings_file: str, model: type) -> str:
    """The markdown artifact: each knob's value and where it came from, the files written."""
    keys = {k.field: k.key for k in knobs_of(model)}
    lines = [f"# tokenwise {settings.group}: effective settings", ""]
    lines += [f"config `{settings.config_path}`; the stages read `{settings.stage_config}`", ""]
    lines += ["| form field | config key | value | from |", "|---|---|---|---|"]
    for name, value in settings.knobs.items():
        source = "run form" if name in settings.overrides else "config"
        lines.append(f"| {name} | `{keys[name]}` | `{_short(value)}` | {source} |")
    lines += ["", f"settings file: `{settings_file}`"]
    return "\n".join(lines)


def _short(value: Any) -> str:
    text = yaml.safe_dump(value, default_flow_style=True, width=1 << 20).strip().removesuffix("...").strip()
    return text if len(text) <= 120 else text[:117] + "..."
