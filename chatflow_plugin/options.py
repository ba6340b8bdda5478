"""Command-line options as dataclasses (argparse-dataclass), with the host's ``--snake_case`` spelling.

Every subcommand declares a dataclass whose fields are made with :func:`option`; the flag is
``--<field name>`` exactly as written (underscores kept, as TencentPretrain spells its options). One idea has one
flag across commands (docs/flags.md); an older spelling stays as a hidden alias (``aliases=["--model"]``: not in
``--help``, a one-line note naming the new flag when used, :func:`add_aliases`). Prefix abbreviations are refused
(``--step`` never binds to ``--steps``).
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import sys
import types
import typing
from typing import Any, Sequence, TypeVar

import argparse_dataclass

T = TypeVar("T")


def option(default: Any = dataclasses.MISSING, *, help: str, positional: bool = False,
           repeatable: bool = False, default_factory: Any = dataclasses.MISSING,
           aliases: Sequence[str] = (), **metadata: Any) -> Any:
    """A dataclass field that becomes one command-line option.

    ``repeatable`` lists accept both ``--x 1 2`` and ``--x 1 --x 2`` (the help says so). A bool field whose
    default is True becomes a ``--no_<name>`` switch: write its help for that switch. ``aliases`` are older
    spellings of the flag, still accepted but hidden from ``--help`` (see :func:`add_aliases`).
    """
    meta = dict(metadata, help=help, _positional=positional, _repeatable=repeatable, _aliases=tuple(aliases))
    if repeatable:
        meta.setdefault("nargs", "+")
    if default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def _with_flag_names(cls: type) -> None:
    hints = typing.get_type_hints(cls)   # modules use `from __future__ import annotations`
    for f in dataclasses.fields(cls):
        f.type = hints.get(f.name, f.type)
        if typing.get_origin(f.type) is list and "type" not in f.metadata:
            raise TypeError(f"option {f.name}: list options need metadata type=")
        meta = dict(f.metadata)
        if "args" not in meta:
            meta["args"] = [f.name] if meta.get("_positional") else [f"--{f.name}"]
            if f.type is bool and f.default is True:
                meta["args"] = [f"--no_{f.name}"]
        f.metadata = types.MappingProxyType(meta)


class _Extend(argparse.Action):
    """Later occurrences add to, not replace, earlier ones (argparse-dataclass's default is MISSING)."""

    def __call__(self, parser, namespace, values, option_string=None):
        items = getattr(namespace, self.dest, None)
        items = [] if items is None or items is dataclasses.MISSING else list(items)
        setattr(namespace, self.dest, items + list(values))


class _HelpFormatter(argparse.HelpFormatter):
    """Each default shown once, and only where it says something: not for switches (a switch is off until
    given; a ``--no_x`` flag's help is written for the flag itself), not for empty or unset values, and not
    when the help text already states the default."""

    def _get_help_string(self, action):
        text = action.help or ""
        default = action.default
        if (isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)) or "default" in text.lower()
                or default in (None, "", [], dataclasses.MISSING) or action.required
                or action.option_strings == [] or default is argparse.SUPPRESS):
            return text
        shown = " ".join(map(str, default)) if isinstance(default, (list, tuple)) else default
        return f"{text} (default: {shown})"


class _OneSpelling:
    """Mixed into a flag with aliases: giving it under two spellings (``--tokenizer A --spm_model_path B``) is an
    error, not a silent last-one-wins."""

    flag = ""

    def __call__(self, parser, namespace, values, option_string=None):
        given = parser.__dict__.setdefault("_spellings_given", {}).setdefault(self.dest, set())
        other = sorted(given - {option_string})
        if other:
            parser.error(f"{option_string} and {other[0]} are one option ({self.flag}); give it once")
        given.add(option_string)
        super().__call__(parser, namespace, values, option_string)


class _Deprecated(_OneSpelling):
    """Mixed into a copy of a flag's action: the old spelling works as the flag does and says what replaced it."""

    def __call__(self, parser, namespace, values, option_string=None):
        print(f"{parser.prog}: note: {option_string} is deprecated, use {self.flag}", file=sys.stderr)
        super().__call__(parser, namespace, values, option_string)


def add_aliases(parser: argparse.ArgumentParser, action: argparse.Action, aliases: Sequence[str]) -> None:
    """Hidden older spellings of ``action``'s flag: each stores into the same value, is left out of ``--help``,
    and prints one line naming the new flag. A required flag stays required: given as either spelling
    (:func:`missing_required` checks it after parsing)."""
    if not aliases:
        return
    flag = action.option_strings[0]
    for alias in aliases:
        hidden = copy.copy(action)
        hidden.option_strings = [alias]
        hidden.help = argparse.SUPPRESS
        hidden.required = False
        hidden.__class__ = type(f"Deprecated{type(action).__name__}", (_Deprecated, type(action)),
                                {"flag": flag})
        parser._add_action(hidden)
    action.__class__ = type(f"OneSpelling{type(action).__name__}", (_OneSpelling, type(action)), {"flag": flag})
    if action.required:
        action.required = False
        action._required_with_aliases = True   # noqa: SLF001 (argparse has no public hook for this)


def missing_required(parser: argparse.ArgumentParser, namespace: argparse.Namespace) -> None:
    """argparse's own error for required flags that have aliases (argparse would name the alias too)."""
    missing = [a.option_strings[0] for a in parser._actions
               if getattr(a, "_required_with_aliases", False)
               and getattr(namespace, a.dest, None) in (None, dataclasses.MISSING)]
    if missing:
        parser.error(f"the following arguments are required: {', '.join(missing)}")


class _Parser(argparse_dataclass.ArgumentParser):
    def _formatted(self, method):
        flagged = [a for a in self._actions if getattr(a, "_required_with_aliases", False)]
        for a in flagged:
            a.required = True      # shown as required in the usage line
        try:
            return method()
        finally:
            for a in flagged:
                a.required = False

    def format_usage(self):
        return self._formatted(super().format_usage)

    def format_help(self):
        return self._formatted(super().format_help)

    def parse_args(self, args=None, namespace=None):
        self._spellings_given = {}
        namespace = argparse.ArgumentParser.parse_args(self, args, namespace)
        missing_required(self, namespace)
        return self._options_type(**argparse_dataclass._get_kwargs(namespace))


def build_parser(cls: type, prog: str | None = None, description: str | None = None) -> argparse.ArgumentParser:
    _with_flag_names(cls)
    parser = _Parser(cls, prog=prog, description=description, formatter_class=_HelpFormatter, allow_abbrev=False)
    aliases = {f.name: f.metadata.get("_aliases", ()) for f in dataclasses.fields(cls)}
    repeatable = {f.name for f in dataclasses.fields(cls) if f.metadata.get("_repeatable")}
    defaults = {}
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            defaults[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            defaults[f.name] = f.default_factory()
    for action in parser._actions:
        # argparse-dataclass leaves MISSING as the parser default; show (and use) the field's own
        if action.dest in defaults and action.default is dataclasses.MISSING:
            action.default = defaults[action.dest]
        if action.dest in repeatable:
            action.__class__ = _Extend
            action.help = f"{action.help} (one or more values; the flag may be repeated)"
    for action in list(parser._actions):
        add_aliases(parser, action, aliases.get(action.dest, ()))
    return parser


def parse_options(cls: type[T], argv: Sequence[str] | None, prog: str | None = None,
                  description: str | None = None) -> T:
    parser = build_parser(cls, prog=prog, description=description)
    return parser.parse_args(list(argv) if argv is not None else None)
