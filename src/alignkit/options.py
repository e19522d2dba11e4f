"""Run configurations as dataclasses, exposed as CLI flags and YAML files.

Every field of a config dataclass becomes a flag (`max_steps` -> `--max-steps`) whose help is
the field's `help` metadata and whose choices are its `Literal` type's values (or `choices`).
`--config run.yaml` reads the same keys (either spelling); flags given on the command line
override the file.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import yaml

from alignkit.errors import AlignkitError

T = TypeVar("T")


def check_ranges(
    positive: dict[str, float] | None = None,
    non_negative: dict[str, float] | None = None,
    fractions: dict[str, float] | None = None,
) -> None:
    """Refuse an option out of its range, naming its flag (keys are field names): `positive`
    must be > 0, `non_negative` >= 0, `fractions` in (0, 1]."""
    for name, value in (positive or {}).items():
        if value <= 0:
            raise AlignkitError(f"--{name.replace('_', '-')} must be > 0, got {value}")
    for name, value in (non_negative or {}).items():
        if value < 0:
            raise AlignkitError(f"--{name.replace('_', '-')} must be >= 0, got {value}")
    for name, value in (fractions or {}).items():
        if not 0 < value <= 1:
            raise AlignkitError(f"--{name.replace('_', '-')} must be in (0, 1], got {value}")


def opt(default: Any, help: str, **kwargs: Any) -> Any:
    """A config field with its --help text (and optional `choices`, `flag`)."""
    metadata = {"help": help, **kwargs}
    if isinstance(default, list):
        return dataclasses.field(default_factory=lambda: list(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def _base_type(tp: Any) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return _base_type(args[0])
    return tp


def add_dataclass_arguments(parser: argparse.ArgumentParser, cls: type) -> None:
    """Add one flag per field of `cls`; defaults are left as None so files can fill them."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        meta = dict(f.metadata)
        if meta.get("cli") is False:
            continue
        flag = "--" + f.name.replace("_", "-")
        tp = _base_type(hints[f.name])
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        help_text = meta.get("help", "")
        if default not in (None, [], ""):
            help_text += f" (default: {default})"
        kwargs: dict[str, Any] = {"help": help_text, "default": None, "dest": f.name}
        if "choices" in meta:
            kwargs["choices"] = meta["choices"]
        elif typing.get_origin(tp) is typing.Literal:
            kwargs["choices"] = list(typing.get_args(tp))
        if tp is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, **kwargs)
        elif typing.get_origin(tp) is list:
            parser.add_argument(flag, nargs="+", metavar=meta.get("metavar", "VALUE"), **kwargs)
        else:
            kwargs["type"] = tp if tp in (int, float) else str
            if "metavar" in meta:
                kwargs["metavar"] = meta["metavar"]
            parser.add_argument(flag, **kwargs)


def load_yaml(path: str) -> dict[str, Any]:
    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except FileNotFoundError as exc:
        raise AlignkitError(f"config file {path} does not exist") from exc
    except yaml.YAMLError as exc:
        raise AlignkitError(f"{path}: invalid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise AlignkitError(f"{path}: a config file must be a mapping of option: value")
    return {str(k).replace("-", "_"): v for k, v in data.items()}


def build_config(cls: type[T], args: argparse.Namespace, config_file: str | None = None) -> T:
    """The dataclass from defaults < YAML file < command-line flags, validated."""
    names = {f.name for f in dataclasses.fields(cls)}
    values: dict[str, Any] = {}
    if config_file:
        file_values = load_yaml(config_file)
        unknown = sorted(set(file_values) - names)
        if unknown:
            raise AlignkitError(
                f"{config_file}: unknown option(s) {', '.join(unknown)}; valid: {', '.join(sorted(names))}"
            )
        values.update(file_values)
    for name in names:
        value = getattr(args, name, None)
        if value is not None:
            values[name] = value
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for name, value in list(values.items()):
        tp = _base_type(hints[name])
        if typing.get_origin(tp) is list and isinstance(value, str):
            values[name] = [value]
        elif tp is float and isinstance(value, int) and not isinstance(value, bool):
            values[name] = float(value)
        choices = fields[name].metadata.get("choices") or (
            typing.get_args(tp) if typing.get_origin(tp) is typing.Literal else None
        )
        if choices and values[name] not in choices:
            raise AlignkitError(
                f"{name}: {values[name]!r} is not one of {', '.join(map(str, choices))}"
                + (f" (in {config_file})" if config_file else "")
            )
    try:
        config = cls(**values)
    except TypeError as exc:
        raise AlignkitError(f"invalid configuration: {exc}") from exc
    check = getattr(config, "validate", None)
    if check:
        check()
    return config


def to_dict(config: Any) -> dict[str, Any]:
    return dataclasses.asdict(config)


CONFIG_NOTE = "Options come from --config (YAML), overridden by flags."


def add_config_verb(
    subparsers: Any,
    name: str,
    cls: type[T],
    run: Callable[[T], int],
    *,
    help: str,
    description: str,
    epilog: str = "",
) -> argparse.ArgumentParser:
    """A CLI verb whose options are the fields of the dataclass `cls`: `--config YAML` plus
    one flag per field; `run(config)` gets the validated config and returns the exit code."""
    parser = subparsers.add_parser(
        name,
        help=help,
        description=description,
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", metavar="YAML", help="YAML file with any of the options below")
    add_dataclass_arguments(parser, cls)
    parser.set_defaults(func=lambda args: run(build_config(cls, args, args.config)))
    return parser
