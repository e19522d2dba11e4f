"""Run configurations as dataclasses, exposed as CLI flags and YAML files.

Every field of a config dataclass becomes a flag (`max_steps` -> `--max-steps`) whose help is
the field's `help` metadata and whose choices are its `Literal` type's values (or `choices`).
`--config run.yaml` reads the same keys (either spelling); flags given on the command line
override the file. `--print-config` writes every option with its default (its help as a
comment) as such a file; a run's `config.json` is one too (the keys it records beyond the
verb's options are skipped with a note). Every verb is built this way (`add_config_verb`; verbs with sub-verbs:
`add_verb_group`).

Field metadata (keyword arguments of `opt`) that shape the flag:
  metavar      the value's name in --help
  choices      the allowed values (else a `Literal` type's)
  cli=False    no flag (a YAML key only)
  positional   an argument without a flag (a list field takes one or more: `PATH...`)
  flags        the flag's spellings, e.g. ("-o", "--out") (default: `--field-name`)
  required     must be given: as a flag, or as a key of the --config file when one is given
  negatable    False: a bool field is a plain switch (`--strict`, no `--no-strict`)
  group        title of the --help section the flag is listed in
  one_of       a name shared by fields of which exactly one must be given (also across the
               --config file and the flags)
  aliases      old spellings kept as deprecated aliases, e.g. ("--keep-fraction",): hidden
               flags that set the same field (and the same keys in a --config file, e.g.
               `keep_fraction:`), with `alignkit: warning: --keep-fraction is deprecated, use
               --fraction` on stderr. Old names of one verb only: the class attribute
               `ALIASES = {"field": ("--old-flag",)}` of that verb's config

Option groups: a concept shared by verbs is declared once, as a small dataclass in the layer
of what it configures, and verb configs inherit it (flags, YAML keys and attributes stay
flat): `model_options.ModelOptions` (--model, --trust-remote-code, --precision),
`data.config.DataOptions` (--data, --data-format, --skip-invalid),
`rewards.options.RewardOptions` (--reward-model, --reward-label, --reward-output),
`inference.config.SamplingOptions` (--max-new-tokens, --temperature, --top-p, --top-k) and
`inference.config.EndpointOptions` (--endpoint, --api-key, --concurrency, --timeout,
--retries, --retry-wait). A verb whose default or help differs re-declares the field (it
keeps its place in --help).

One name per concept (old spellings: deprecated aliases that warn):
  preference/training data  --data                 (prompt files stay --prompts / --queries:
                                                    prompts are not preference data)
  output                    --output               (data convert: -o; --out is an alias)
  budget                    --fraction / --count   (select deft: --keep-fraction/--keep-count)
  K answers per prompt      --num-samples          (generate: --num-responses)
  OpenAI-compatible server  --endpoint URL         (online: --generator URL still works)
  its API key               --api-key, default $OPENAI_API_KEY (online: --generator-api-key)
  its requests              --concurrency --timeout --retries --retry-wait
                                                   (online: --generator-concurrency, ...)
  cadence                   --save-steps/--eval-steps in optimizer steps (train, train-rm);
                            the online verbs' --save-every/--eval-every count iterations, a
                            different unit, so they keep their own names
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import textwrap
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


def warn_deprecated(old: str, new: str, where: str = "") -> None:
    """The warning of an old spelling (a flag, or a key of a --config file)."""
    print(f"alignkit: warning: {old}{where} is deprecated, use {new}", file=sys.stderr)


class _DeprecatedFlag(argparse.Action):
    """A hidden old spelling of a field's flag: sets the same field (`dest`) and warns."""

    def __init__(self, option_strings: list[str], dest: str, canonical: str = "", **kwargs: Any):
        self.canonical = canonical
        self.switch = kwargs.pop("switch", None)  # a bool flag: the value it sets
        if self.switch is not None:
            kwargs["nargs"] = 0
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser: Any, namespace: Any, values: Any, option_string: Any = None):
        new = self.canonical
        if self.switch is False and new.startswith("--"):
            new = "--no-" + new[2:]
        warn_deprecated(str(option_string), new)
        setattr(namespace, self.dest, self.switch if self.switch is not None else values)


def field_aliases(cls: type, f: dataclasses.Field) -> tuple[str, ...]:
    """The old spellings of a field's flag: its `aliases` metadata, and those a verb's class
    gives it in `ALIASES` (field name -> flags: old names of one verb only)."""
    return (*f.metadata.get("aliases", ()), *getattr(cls, "ALIASES", {}).get(f.name, ()))


def _aliases(cls: type) -> dict[str, str]:
    """Old key (a flag's spelling as a config key, e.g. keep_fraction) -> field name."""
    return {
        alias.lstrip("-").replace("-", "_"): f.name
        for f in dataclasses.fields(cls)
        for alias in field_aliases(cls, f)
        if alias.startswith("--")
    }


def opt(default: Any, help: str, **kwargs: Any) -> Any:
    """A config field with its --help text (and optional `choices`, `flags`, ...;
    `kw_only=True`: a keyword-only argument of the dataclass, as the option groups' fields)."""
    keyword: dict[str, Any] = {"kw_only": kwargs.pop("kw_only")} if "kw_only" in kwargs else {}
    metadata = {"help": help, **kwargs}
    if isinstance(default, list):
        return dataclasses.field(
            default_factory=lambda: list(default), metadata=metadata, **keyword
        )
    return dataclasses.field(default=default, metadata=metadata, **keyword)


def field_default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    return f.default_factory()  # type: ignore[misc]


def _base_type(tp: Any) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return _base_type(args[0])
    return tp


def add_dataclass_arguments(
    parser: argparse.ArgumentParser, cls: type, show_defaults: bool = True
) -> None:
    """Add one flag per field of `cls`; defaults are left as None so files can fill them.
    `show_defaults=False`: the help texts state their defaults themselves."""
    hints = typing.get_type_hints(cls)
    groups: dict[str, Any] = {}

    def container(meta: dict[str, Any]) -> Any:
        target: Any = parser
        if "group" in meta:
            if meta["group"] not in groups:
                groups[meta["group"]] = parser.add_argument_group(meta["group"])
            target = groups[meta["group"]]
        if "one_of" in meta:
            key = ("one_of", meta["one_of"])
            if key not in groups:
                groups[key] = target.add_mutually_exclusive_group(required=True)
            target = groups[key]
        return target

    # flags of a `group` after the others, as argparse prints that section after them
    fields = sorted(dataclasses.fields(cls), key=lambda f: "group" in f.metadata)
    for f in fields:
        meta = dict(f.metadata)
        if meta.get("cli") is False:
            continue
        tp = _base_type(hints[f.name])
        default = field_default(f)
        help_text = meta.get("help", "")
        if show_defaults and default not in (None, [], ""):
            help_text += f" (default: {default})"
        kwargs: dict[str, Any] = {"help": help_text, "default": None}
        if "choices" in meta:
            kwargs["choices"] = meta["choices"]
        elif typing.get_origin(tp) is typing.Literal:
            kwargs["choices"] = list(typing.get_args(tp))
        if "metavar" in meta:
            kwargs["metavar"] = meta["metavar"]
        if meta.get("positional"):
            names: list[str] = [f.name]
        else:
            names = list(meta.get("flags") or ["--" + f.name.replace("_", "-")])
            kwargs["dest"] = f.name
            # given by an alias, a required field is checked once merged (`_check_given`)
            if meta.get("required") and not field_aliases(cls, f):
                kwargs["required"] = True
        add = container(meta).add_argument
        if tp is bool:
            action = argparse.BooleanOptionalAction
            add(*names, action=action if meta.get("negatable", True) else "store_true", **kwargs)
        elif typing.get_origin(tp) is list:
            kwargs.setdefault("metavar", "VALUE")
            add(*names, nargs="+", **kwargs)
        else:
            add(*names, type=tp if tp in (int, float) else str, **kwargs)
        _add_aliases(add, f, tp, names[-1], kwargs, list(field_aliases(cls, f)))


def _add_aliases(
    add: Any, f: dataclasses.Field, tp: Any, canonical: str, kwargs: dict, aliases: list[str]
) -> None:
    """The field's deprecated spellings: hidden flags that set it and warn."""
    if not aliases:
        return
    hidden = {"dest": f.name, "default": None, "help": argparse.SUPPRESS}
    hidden["canonical"] = canonical
    if tp is bool:
        add(*aliases, action=_DeprecatedFlag, switch=True, **hidden)
        if f.metadata.get("negatable", True):
            negated = ["--no-" + a[2:] for a in aliases if a.startswith("--")]
            add(*negated, action=_DeprecatedFlag, switch=False, **hidden)
        return
    if typing.get_origin(tp) is list:
        hidden["nargs"] = "+"
    else:
        hidden["type"] = tp if tp in (int, float) else str
    if "choices" in kwargs:
        hidden["choices"] = kwargs["choices"]
    add(*aliases, action=_DeprecatedFlag, metavar=kwargs.get("metavar"), **hidden)


def load_yaml(path: str) -> dict[str, Any]:
    """A --config file's mapping (a `.json` file read as JSON), keys with underscores."""
    kind = "JSON" if path.endswith(".json") else "YAML"
    try:
        text = Path(path).read_text(encoding="utf-8")
        data = (json.loads(text) if kind == "JSON" else yaml.safe_load(text)) or {}
    except FileNotFoundError as exc:
        raise AlignkitError(f"config file {path} does not exist") from exc
    except (yaml.YAMLError, json.JSONDecodeError) as exc:
        raise AlignkitError(f"{path}: invalid {kind}: {exc}") from exc
    if not isinstance(data, dict):
        raise AlignkitError(f"{path}: a config file must be a mapping of option: value")
    return {str(k).replace("-", "_"): v for k, v in data.items()}


# what a run's config.json writes for an option it keeps secret (the API key): never read back
REDACTED = "(set, not written)"


def read_config_file(cls: type, path: str) -> dict[str, Any]:
    """The options of `cls` in a --config file (YAML, or JSON, which YAML reads too).

    An unknown key of a YAML file is an error (a typo must not pass silently). A `.json` file
    is read as a run's `config.json`, which records more than the options of one verb (the
    precision used, the options of the verb that wrote it): its unknown keys, and the values a
    run does not write (`REDACTED`), are skipped with a note on stderr."""
    names = {f.name for f in dataclasses.fields(cls)}
    values = _rename_aliases(cls, load_yaml(path), path)
    unknown = sorted(set(values) - names)
    record = path.endswith(".json")
    if unknown and not record:
        raise AlignkitError(
            f"{path}: unknown option(s) {', '.join(unknown)}; valid: {', '.join(sorted(names))}"
        )
    hidden = sorted(k for k, v in values.items() if k in names and v == REDACTED)
    if record and unknown:
        print(
            f"alignkit: note: {path}: skipped {', '.join(unknown)} (recorded by the run, not "
            "options of this verb)",
            file=sys.stderr,
        )
    if hidden:
        print(
            f"alignkit: note: {path}: skipped {', '.join(hidden)} (not written by the run: "
            "give it again)",
            file=sys.stderr,
        )
    return {k: v for k, v in values.items() if k in names and k not in hidden}


def merged_values(
    cls: type, args: argparse.Namespace, config_file: str | None = None
) -> dict[str, Any]:
    """The options given: the --config file's, overridden by the command line's flags (field
    name -> value, typed as the fields; defaults not filled in, nothing validated)."""
    names = {f.name for f in dataclasses.fields(cls)}
    values: dict[str, Any] = read_config_file(cls, config_file) if config_file else {}
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
        elif tp is float and isinstance(value, str):  # YAML 1.1 reads 1e-5 as a string
            try:
                values[name] = float(value)
            except ValueError as exc:
                where = f" (in {config_file})" if config_file else ""
                raise AlignkitError(f"{name}: {value!r} is not a number{where}") from exc
        choices = _choices(fields[name], tp)
        unset = values[name] is None or values[name] == field_default(fields[name])
        if choices and not unset and values[name] not in choices:
            raise AlignkitError(
                f"{name}: {values[name]!r} is not one of {', '.join(map(str, choices))}"
                + (f" (in {config_file})" if config_file else "")
            )
    return values


def _choices(f: dataclasses.Field, tp: Any) -> Any:
    return f.metadata.get("choices") or (
        typing.get_args(tp) if typing.get_origin(tp) is typing.Literal else None
    )


def build_config(cls: type[T], args: argparse.Namespace, config_file: str | None = None) -> T:
    """The dataclass from defaults < YAML file < command-line flags, validated."""
    values = merged_values(cls, args, config_file)
    _check_given(cls, values, config_file)
    try:
        config = cls(**values)
    except TypeError as exc:
        raise AlignkitError(f"invalid configuration: {exc}") from exc
    check = getattr(config, "validate", None)
    if check:
        check()
    return config


def config_fields(cls: type) -> list[dataclasses.Field]:
    """The fields a --config file sets: all but those whose name is an old spelling of
    another field (such a key sets that field)."""
    shadowed = _aliases(cls)
    return [f for f in dataclasses.fields(cls) if f.name not in shadowed]


def config_yaml(cls: type, values: dict[str, Any], title: str) -> str:
    """Every option of `cls` as a --config file: each key with its help (and choices) as a
    comment, its value from `values` (field name -> value) or else its default. Keys are the
    field names (underscores); an option that is None is left to the verb (the help says
    what it then takes)."""
    hints = typing.get_type_hints(cls)
    lines = [f"# {title}", "# every option with its default; edit, then pass as --config FILE", ""]
    for f in config_fields(cls):
        meta = f.metadata
        notes = [str(meta.get("help", ""))]
        choices = _choices(f, _base_type(hints[f.name]))
        if choices:
            notes.append(f"(one of: {', '.join(map(str, choices))})")
        if meta.get("required"):
            notes.append("(required)")
        if "one_of" in meta:
            notes.append(f"(exactly one of the {meta['one_of']} options)")
        if meta.get("cli") is False:
            notes.append("(no flag: a --config key only)")
        comment = textwrap.wrap(" ".join(n for n in notes if n), 94) or [""]
        lines += [f"# {line}" for line in comment]
        value = values[f.name] if f.name in values else field_default(f)
        lines += [f"{f.name}: {yaml_value(value)}", ""]
    return "\n".join(lines)


def yaml_value(value: Any) -> str:
    """A value as YAML on one line (lists and mappings in flow style)."""
    text = yaml.safe_dump(value, default_flow_style=True, sort_keys=False, width=10**6)
    return text.removesuffix("...\n").strip()


def print_config(cls: type, args: argparse.Namespace, config_file: str | None, title: str) -> int:
    """`--print-config`: the options given (file < flags) and every default, as YAML on
    stdout; nothing is validated or run."""
    text = getattr(cls, "config_text", None)
    if text is not None:  # a verb whose --config is its own kind of file (the study's grid)
        sys.stdout.write(text(cls(**merged_values(cls, args))))
        return 0
    sys.stdout.write(config_yaml(cls, merged_values(cls, args, config_file), title))
    return 0


def _rename_aliases(cls: type, values: dict[str, Any], config_file: str) -> dict[str, Any]:
    """The keys of a --config file that are old spellings, under their fields' names (with a
    warning each; an old and a new spelling of one option together are refused)."""
    aliases = _aliases(cls)
    renamed: dict[str, Any] = {}
    for key, value in values.items():
        name = aliases.get(key, key)
        if name != key:
            warn_deprecated(key, name, f" (in {config_file})")
            if name in values:
                raise AlignkitError(f"{config_file}: {key} and {name} are one option; give one")
        renamed[name] = value
    return renamed


def _flag(f: dataclasses.Field) -> str:
    if f.metadata.get("positional"):
        return f.metadata.get("metavar", f.name.upper())
    return (f.metadata.get("flags") or ["--" + f.name.replace("_", "-")])[-1]


def _check_given(cls: type, values: dict[str, Any], config_file: str | None) -> None:
    """`required` fields and `one_of` sets, once the file and the flags are merged (without a
    file argparse has checked them already)."""
    where = f" (a flag or a key of {config_file})" if config_file else ""
    sets: dict[str, list[dataclasses.Field]] = {}
    for f in dataclasses.fields(cls):
        if f.metadata.get("required") and values.get(f.name) is None:
            raise AlignkitError(f"{_flag(f)} is required{where}")
        if "one_of" in f.metadata:
            sets.setdefault(f.metadata["one_of"], []).append(f)
    for members in sets.values():
        given = [_flag(f) for f in members if values.get(f.name) is not None]
        if len(given) != 1:
            names = ", ".join(_flag(f) for f in members)
            raise AlignkitError(f"give exactly one of {names}{where}; given: {len(given)}")


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
    show_defaults: bool = True,
) -> argparse.ArgumentParser:
    """A CLI verb whose options are the fields of the dataclass `cls`: `--config YAML` plus
    one flag per field; `run(config)` gets the validated config and returns the exit code.

    A dataclass with a field named `config` reads its file itself (the study's grid): that
    field is the verb's `--config`, and the file is not read as options of `cls`."""
    parser = subparsers.add_parser(
        name,
        help=help,
        description=description,
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    own_file = "config" in {f.name for f in dataclasses.fields(cls)}
    if not own_file:
        parser.add_argument(
            "--config",
            metavar="YAML",
            help="YAML file with any of the options below (keys: the option names with "
            "underscores, e.g. max_steps); a run's config.json works too",
        )
    parser.add_argument(
        "--print-config",
        action="store_true",
        help="print every option with its default (and the values of --config and the flags "
        "given) as YAML, then exit: a file --config reads",
    )
    add_dataclass_arguments(parser, cls, show_defaults)
    _required_may_come_from_file(parser)
    title = f"alignkit {parser.prog.split(' ', 1)[-1]} --config FILE"

    def func(args: argparse.Namespace) -> int:
        config_file = None if own_file else args.config
        if args.print_config:
            return print_config(cls, args, config_file, title)
        return run(build_config(cls, args, config_file))

    parser.set_defaults(func=func, config_class=cls)
    return parser


def _required_may_come_from_file(parser: argparse.ArgumentParser) -> None:
    """With `--config FILE` (or `--print-config`) on the command line, argparse does not
    insist on the required arguments and `one_of` sets: they may be keys of the file
    (`build_config` checks them once both are merged). Without it, argparse's own checks and
    messages stand."""
    parse = parser.parse_known_args

    def parse_known_args(args: Any = None, namespace: Any = None) -> Any:
        given = sys.argv[1:] if args is None else list(args)
        flags = ("--config", "--print-config")
        if not any(a in flags or a.startswith("--config=") for a in given):
            return parse(args, namespace)
        relaxed = [a for a in parser._actions if a.required]
        relaxed += [g for g in parser._mutually_exclusive_groups if g.required]
        for item in relaxed:
            item.required = False
        try:
            return parse(args, namespace)
        finally:
            for item in relaxed:
                item.required = True

    parser.parse_known_args = parse_known_args  # type: ignore[method-assign]


def add_verb_group(
    subparsers: Any, name: str, *, help: str, description: str, epilog: str = "", metavar: str
) -> Any:
    """A verb made of sub-verbs (`alignkit data inspect`): returns the subparsers to add them
    to (with `add_config_verb`); the verb alone prints its help and exits with 2."""
    parser = subparsers.add_parser(
        name,
        help=help,
        description=description,
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )

    def usage(args: argparse.Namespace) -> int:
        parser.print_help()
        return 2

    parser.set_defaults(func=usage)
    return parser.add_subparsers(dest=f"{name}_command", metavar=metavar)
