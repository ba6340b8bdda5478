"""The mixture file: sources grouped as in the paper's Table 1, and the schedule that mixes the groups.

Format (JSON; ``comment``/``description`` keys are allowed anywhere and ignored)::

    {"name": "chatflow_table1", "seq_length": 2048, "T_grow": 5000000, "schedule_unit": "samples",
     "seed": 42, "data_root": "../../data",
     "groups": [{"name": "en_corpus", "alpha": 0.6, "beta": 0.15, "language": "en",
                 "sources": [{"name": "refinedweb", "kind": "corpus", "paths": ["en/*.jsonl"]}]}]}

``schedule_shape`` (default ``linear_grow_hold``, the paper's) names a shape of :data:`schedule.SHAPES`;
the shape says which further keys the top level and every group take (here ``T_grow``; ``alpha``,
``beta``) and checks them. An optional ``adaptive`` object is a policy that re-weights the groups during
training (:mod:`.adaptive`). Every key is documented in ``chatflow_plugin/data/README.md``.

Relative paths resolve against ``data_root``, itself relative to the mixture file (default: the
file's folder); ``--data_root`` on the command line (relative to the working directory) overrides it.
A parsed spec always holds an absolute ``data_root``; :func:`write_mixture` writes it back following the
project's path rule (:mod:`chatflow_plugin.files`). A source's share inside its group is proportional to
its tokens unless it gives ``share``.
"""
from __future__ import annotations

import glob
import json
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ..files import atomic_file, json_error, path_for_file
from ..errors import ChatflowError
from ..languages import languages_of
from ..resources import named, not_found_hint
from .adaptive import AdaptivePolicy, parse_policy
from .inputs import is_datasets_folder
from .schedule import DEFAULT_SHAPE, REQUIRED, SHAPES, Param, ParamError, Schedule, non_negative

KINDS = ("corpus", "code", "parallel", "instruction")
FORMATS = ("jsonl", "tsv", "text")
SCHEDULE_UNITS = ("samples", "tokens")
_IGNORED = {"comment", "description"}
MAX_SEQ_LENGTH = 1 << 20   # 1,048,576 tokens: the longest context windows models are trained with
_TOP_KEYS = {"name", "seq_length", "schedule_shape", "schedule_unit", "seed", "data_root", "groups", "adaptive"}
_GROUP_KEYS = {"name", "language", "sources"}      # a schedule shape adds its own keys to both
_SOURCE_KEYS = {"name", "kind", "paths", "share", "format", "fields", "text_field", "language"}


@dataclass(frozen=True)
class SourceSpec:
    name: str
    kind: str
    paths: tuple[str, ...]
    share: float | None = None          # relative share in its group; None: proportional to tokens
    format: str | None = None           # None: from the file extension (.jsonl/.json, .tsv, else text)
    fields: tuple[str, ...] = ("en", "zh")   # parallel: the two fields, in rendering order
    text_field: str = "text"            # corpus/code JSONL field
    language: str | None = None


@dataclass(frozen=True)
class GroupSpec:
    name: str
    sources: tuple[SourceSpec, ...]
    language: str | None = None         # a code of chatflow_plugin.languages ("zh"), or e.g. "en-zh"/"multi"
    schedule_params: dict[str, Any] = field(default_factory=dict, hash=False)   # the shape's group keys


@dataclass(frozen=True)
class MixtureSpec:
    name: str
    groups: tuple[GroupSpec, ...]
    seq_length: int = 2048
    schedule_shape: str = DEFAULT_SHAPE
    schedule_params: dict[str, Any] = field(default_factory=dict, hash=False)   # the shape's top-level keys
    schedule_unit: str = "samples"
    seed: int = 0
    data_root: Path = Path(".")
    path: Path | None = None
    warnings: tuple[str, ...] = field(default=(), compare=False)
    adaptive: AdaptivePolicy | None = None      # re-weights the groups during training (.adaptive)

    @property
    def group_names(self) -> list[str]:
        return [g.name for g in self.groups]

    @property
    def sources(self) -> list[tuple[GroupSpec, SourceSpec]]:
        return [(g, s) for g in self.groups for s in g.sources]

    @property
    def sample_size(self) -> int:
        """One training sample in the schedule's unit: time in samples = time in the file / sample_size."""
        return self.seq_length if self.schedule_unit == "tokens" else 1

    def schedule(self, sample_size: float | None = None) -> Schedule:
        """The schedule over training samples; ``sample_size`` (default: the unit's, :attr:`sample_size`)
        reads the file's times in another unit (e.g. 1: the times as written)."""
        return SHAPES[self.schedule_shape].from_params(
            self.schedule_params, [g.schedule_params for g in self.groups],
            self.sample_size if sample_size is None else sample_size)

    def in_samples(self, sample_size: float) -> "MixtureSpec":
        """The same schedule with its times (the shape's ``time`` keys) divided by ``sample_size`` and
        ``schedule_unit`` "samples": what a trainer reads when the file's times are in another unit, such as
        raw records before packing (``chatflow plan --schedule_unit records``)."""
        if not sample_size > 0:
            raise ChatflowError(f"mixture {self.name!r}: the sample size must be positive, got {sample_size}")
        shape = SHAPES[self.schedule_shape]

        def convert(params: dict[str, Any], keys: Mapping[str, Param]) -> dict[str, Any]:
            out = dict(params)
            for key, param in keys.items():
                if param.time and out.get(key) is not None:
                    value = out[key]
                    out[key] = [v / sample_size for v in value] if isinstance(value, (list, tuple)) else value / sample_size
            return out

        groups = tuple(replace(g, schedule_params=convert(g.schedule_params, shape.group_keys)) for g in self.groups)
        spec = replace(self, schedule_params=convert(self.schedule_params, shape.mixture_keys), groups=groups,
                       schedule_unit="samples")
        if not np.allclose(spec.schedule().knots, self.schedule(sample_size).knots, rtol=1e-12, atol=0):
            raise ChatflowError(f"schedule shape {self.schedule_shape!r} does not mark all its times (Param(time=True)): "
                                f"its mixture cannot be rewritten in samples")
        return spec

    def with_group_factors(self, factors: Mapping[str, float]) -> "MixtureSpec":
        """The same mixture with every weight key of group g (the shape's ``Param(weight=True)`` keys, e.g.
        alpha and beta, or the piecewise weights) multiplied by ``factors[g]`` (default 1): the same shape,
        knots and ramps, each group's weight scaled at every time."""
        keys = [k for k, p in SHAPES[self.schedule_shape].group_keys.items() if p.weight]

        def scaled(value: Any, factor: float) -> Any:
            return tuple(v * factor for v in value) if isinstance(value, (list, tuple)) else value * factor

        groups = tuple(replace(g, schedule_params={k: scaled(v, float(factors.get(g.name, 1.0))) if k in keys else v
                                                   for k, v in g.schedule_params.items()}) for g in self.groups)
        return replace(self, groups=groups)

    # The paper shape's T_grow, for its report and plot (``chatflow mixture``); other shapes have none.
    @property
    def t_grow(self) -> float:
        if "T_grow" not in self.schedule_params:
            raise AttributeError(f"mixture {self.name!r}: the {self.schedule_shape} schedule has no T_grow")
        return self.schedule_params["T_grow"]

    @property
    def t_grow_samples(self) -> float:
        """T_grow in training samples (packed sequences of seq_length tokens)."""
        return self.t_grow / self.sample_size

    def with_overrides(self, data_root: str | os.PathLike | None = None, seq_length: int | None = None,
                       source_paths: dict[str, list[str]] | None = None) -> "MixtureSpec":
        spec = self
        if data_root is not None:
            spec = replace(spec, data_root=_absolute(data_root))
        if seq_length is not None:
            if not 0 < seq_length <= MAX_SEQ_LENGTH:
                raise ChatflowError(f"--seq_length must be a positive integer up to {MAX_SEQ_LENGTH:,} (the longest "
                                    f"context models train on), got {seq_length:,}")
            spec = replace(spec, seq_length=int(seq_length))
        if source_paths:
            known = {s.name for _, s in spec.sources}
            unknown = sorted(set(source_paths) - known)
            if unknown:
                raise ChatflowError(f"--source_path names unknown sources {unknown}; known: {sorted(known)}")
            groups = tuple(replace(g, sources=tuple(
                replace(s, paths=tuple(source_paths[s.name])) if s.name in source_paths else s
                for s in g.sources)) for g in spec.groups)
            spec = replace(spec, groups=groups)
        return spec

    def resolve_files(self) -> dict[str, list[Path]]:
        """Each source's input files (globs expanded, sorted); missing files are an error."""
        resolved: dict[str, list[Path]] = {}
        problems = []
        for _, source in self.sources:
            files: list[Path] = []
            for pattern in source.paths:
                full = pattern if os.path.isabs(pattern) else str(self.data_root / pattern)
                if os.path.exists(full) or not glob.has_magic(full):   # a file named "br[1].jsonl" is that file
                    matches = [full] if os.path.exists(full) else []
                else:
                    matches = sorted(glob.glob(full, recursive=True))
                matches = [m for m in matches if os.path.isfile(m) or is_datasets_folder(m)]   # save_to_disk folders
                if not matches:
                    problems.append(f"source {source.name!r}: no file matches {full}")
                files.extend(Path(m) for m in matches)
            resolved[source.name] = files
        if problems:
            where = f" (data_root {self.data_root}; override with --data_root or --source_path NAME=PATH)"
            raise ChatflowError("missing input files:\n  " + "\n  ".join(problems) + "\n" + where)
        return resolved

    def scanned_folders(self) -> list[Path]:
        """The folders whose files the sources' glob patterns take (``en/*.jsonl``: ``<data_root>/en``): inputs
        of preprocessing, which must not hold its output (a later run would read it)."""
        folders = []
        for _, source in self.sources:
            for pattern in source.paths:
                full = Path(pattern if os.path.isabs(pattern) else str(self.data_root / pattern))
                if os.path.exists(full) or not glob.has_magic(str(full)):
                    continue
                first_magic = next(i for i, part in enumerate(full.parts) if glob.has_magic(part))
                folders.append(Path(*full.parts[:first_magic]))
        return sorted(set(folders))

    def to_json(self) -> dict[str, Any]:
        """The spec as a mixture file's JSON (``data_root`` absolute; :func:`write_mixture` relativises it)."""
        # the default shape is left implicit: a paper mixture writes what it wrote before shapes existed
        shape = {} if self.schedule_shape == DEFAULT_SHAPE else {"schedule_shape": self.schedule_shape}
        adaptive = {} if self.adaptive is None else {"adaptive": self.adaptive.to_json()}
        return {
            "name": self.name, "seq_length": self.seq_length, **shape, **self.schedule_params,
            "schedule_unit": self.schedule_unit, "seed": self.seed, "data_root": str(self.data_root), **adaptive,
            "groups": [{"name": g.name, **g.schedule_params, "language": g.language,
                        "sources": [{"name": s.name, "kind": s.kind, "paths": list(s.paths), "share": s.share,
                                     "format": s.format, "fields": list(s.fields), "text_field": s.text_field,
                                     "language": s.language} for s in g.sources]} for g in self.groups],
        }


def _reject_duplicate_keys(where: str):
    def hook(pairs):
        seen = {}
        for key, value in pairs:
            if key in seen:
                raise ChatflowError(f"{where}: duplicate key {key!r}")
            seen[key] = value
        return seen
    return hook


def check_keys(obj: Any, allowed: set[str], where: str) -> dict:
    if not isinstance(obj, dict):
        raise ChatflowError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    unknown = sorted(set(obj) - allowed - _IGNORED)
    if unknown:
        raise ChatflowError(f"{where}: unknown key(s) {unknown}; allowed: {sorted(allowed)}")
    return obj


def _checked(check, value: Any, where: str) -> Any:
    try:
        return check(value)
    except ValueError as exc:
        raise ChatflowError(f"{where}: {exc}") from None


def _schedule_keys(obj: dict, params: Mapping[str, Param], where: str) -> dict[str, Any]:
    """The keys a schedule shape reads from ``obj`` (the top level or a group), each checked."""
    out: dict[str, Any] = {}
    for key, param in params.items():
        if key in obj:
            out[key] = _checked(param.check, obj[key], f"{where}.{key}")
        elif param.default is REQUIRED:
            raise ChatflowError(f"{where}: missing {key!r}")
        else:
            out[key] = param.default
    return out


MAX_NAME = 100   # characters; a source's name is part of its shard files' names


def _name(obj: dict, where: str) -> str:
    """A group's or source's name: it becomes part of file names and CSV columns, so it must be one."""
    name = obj.get("name")
    if not isinstance(name, str) or not name.strip() or "/" in name or "\\" in name or name.startswith("."):
        raise ChatflowError(f"{where}.name: expected a non-empty name without '/' or '\\', not starting with "
                            f"'.', got {name!r}")
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise ChatflowError(f"{where}.name: control characters are not allowed in a name, got {name!r}")
    if len(name) > MAX_NAME or len(name.encode("utf-8", "surrogatepass")) > 2 * MAX_NAME:
        raise ChatflowError(f"{where}.name: at most {MAX_NAME} characters ({2 * MAX_NAME} UTF-8 bytes), got "
                            f"{len(name)}: {name[:40]!r}...")
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise ChatflowError(f"{where}.name: a lone surrogate is not a character, got {name!r}") from None
    return name


def _named_entry(raw: Any, allowed: set[str], where: str, seen: set[str], what: str) -> tuple[str, str]:
    """Check a group/source object: its name (unique among ``seen``) and keys. Returns (name, where)."""
    if not isinstance(raw, dict):
        raise ChatflowError(f"{where}: expected a JSON object, got {type(raw).__name__}")
    name = _name(raw, where)
    where = f"{where} ({name})"
    check_keys(raw, allowed, where)
    if name in seen:
        raise ChatflowError(f"{where}: duplicate {what} name {name!r}")
    seen.add(name)
    return name, where


def _shape(data: Any, where: str) -> type[Schedule]:
    name = data.get("schedule_shape", DEFAULT_SHAPE) if isinstance(data, dict) else DEFAULT_SHAPE
    if not isinstance(name, str) or name not in SHAPES:
        raise ChatflowError(f"{where}.schedule_shape: expected one of {sorted(SHAPES)}, got {name!r}")
    return SHAPES[name]


def _checked_schedule(spec: MixtureSpec, where: str) -> tuple[str, ...]:
    """Build the spec's schedule once, so that keys valid one by one but not together fail here, naming
    the file (and the group and key when the shape says); returns the warnings about it."""
    try:
        with np.errstate(all="ignore"):     # overflowing weights are reported below, not warned about
            schedule = spec.schedule()
    except ValueError as exc:
        if isinstance(exc, ParamError) and exc.group is not None:
            where = f"{where}.groups[{exc.group}] ({spec.groups[exc.group].name})"
        if isinstance(exc, ParamError) and exc.key is not None:
            where = f"{where}.{exc.key}"
        raise ChatflowError(f"{where}: {exc}") from None
    _check_computable(schedule, where)
    total = schedule.expected_counts(schedule.knots[-1] + 1.0)    # p holds after the last knot
    return tuple(f"group {g.name!r} has zero weight throughout the schedule: never sampled"
                 for g, count in zip(spec.groups, total) if count == 0)


def _default_fields(language) -> list[str]:
    """A parallel source's two fields when the file names none: the two languages of its tag ("en-ja" ->
    en, ja), else ChatFlow's en, zh."""
    pair = languages_of(language) if isinstance(language, str) else ()
    return list(pair) if len(pair) == 2 else ["en", "zh"]


def _check_computable(schedule: Schedule, where: str) -> None:
    """The schedule's numbers hold in floating point: probabilities finite and summing to 1, expected counts
    finite, non-negative and summing to the elapsed time, at and between its knots. Weights that span hundreds
    of orders of magnitude (1e308 next to 1e-308) fail here, not in the sampler."""
    knots = np.asarray(schedule.knots, dtype=np.float64)
    times = np.unique(np.concatenate([knots, knots + 0.5, knots + 1.0, [2 * knots[-1] + 1.0]]))
    with np.errstate(all="ignore"):
        p = schedule.probabilities(times)
        counts = schedule.expected_counts(times)
    ok = (np.isfinite(p).all() and np.isfinite(counts).all() and (p >= 0).all() and (counts >= -1e-6).all()
          and np.allclose(p.sum(axis=-1), 1.0, rtol=0, atol=1e-9)
          and np.allclose(counts.sum(axis=-1), times, rtol=1e-9, atol=1e-6))
    if not ok:
        raise ChatflowError(f"{where}: the schedule cannot be computed in floating point (weights too large, or "
                            f"spanning too many orders of magnitude?); give weights within a few orders of "
                            f"magnitude of 1")


def parse_mixture(data: Any, where: str = "mixture", base_dir: Path = Path(".")) -> MixtureSpec:
    shape = _shape(data, where)
    top = check_keys(data, _TOP_KEYS | set(shape.mixture_keys), where)
    schedule_params = _schedule_keys(top, shape.mixture_keys, where)
    seq_length = top.get("seq_length", 2048)
    if isinstance(seq_length, bool) or not isinstance(seq_length, int) or not 0 < seq_length <= MAX_SEQ_LENGTH:
        raise ChatflowError(f"{where}.seq_length: expected a positive integer up to {MAX_SEQ_LENGTH:,} (the longest "
                            f"context models train on), got {seq_length!r}")
    unit = top.get("schedule_unit", "samples")
    if unit not in SCHEDULE_UNITS:
        raise ChatflowError(f"{where}.schedule_unit: expected one of {SCHEDULE_UNITS}, got {unit!r}")
    seed = top.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ChatflowError(f"{where}.seed: expected a non-negative integer, got {seed!r}")
    groups_raw = top.get("groups")
    if not isinstance(groups_raw, list) or not groups_raw:
        raise ChatflowError(f"{where}.groups: expected a non-empty list of groups")

    groups: list[GroupSpec] = []
    group_names: set[str] = set()
    source_names: set[str] = set()
    for gi, graw in enumerate(groups_raw):
        gname, gwhere = _named_entry(graw, _GROUP_KEYS | set(shape.group_keys), f"{where}.groups[{gi}]",
                                     group_names, "group")
        group_params = _schedule_keys(graw, shape.group_keys, gwhere)
        sources_raw = graw.get("sources")
        if not isinstance(sources_raw, list) or not sources_raw:
            raise ChatflowError(f"{gwhere}.sources: expected a non-empty list of sources")
        sources = []
        for si, sraw in enumerate(sources_raw):
            sname, swhere = _named_entry(sraw, _SOURCE_KEYS, f"{gwhere}.sources[{si}]", source_names, "source")
            kind = sraw.get("kind")
            if kind not in KINDS:
                raise ChatflowError(f"{swhere}.kind: expected one of {KINDS}, got {kind!r}")
            paths = sraw.get("paths")
            if isinstance(paths, str):
                paths = [paths]
            if not isinstance(paths, list) or not paths or not all(isinstance(p, str) and p for p in paths):
                raise ChatflowError(f"{swhere}.paths: expected a file path or a non-empty list of paths")
            share = None
            if "share" in sraw and sraw["share"] is not None:
                share = _checked(non_negative, sraw["share"], f"{swhere}.share")
            fmt = sraw.get("format")
            if fmt is not None and fmt not in FORMATS:
                raise ChatflowError(f"{swhere}.format: expected one of {FORMATS}, got {fmt!r}")
            language = sraw.get("language", graw.get("language"))
            fields = sraw.get("fields", _default_fields(language))
            if (not isinstance(fields, list) or len(fields) != 2 or len(set(fields)) != 2
                    or not all(isinstance(f, str) and f for f in fields)):
                raise ChatflowError(f"{swhere}.fields: expected two distinct field names, got {fields!r}")
            text_field = sraw.get("text_field", "text")
            if not isinstance(text_field, str) or not text_field:
                raise ChatflowError(f"{swhere}.text_field: expected a field name, got {text_field!r}")
            sources.append(SourceSpec(name=sname, kind=kind, paths=tuple(paths), share=share, format=fmt,
                                      fields=tuple(fields), text_field=text_field,
                                      language=language))
        if all(s.share == 0 for s in sources):
            raise ChatflowError(f"{gwhere}: every source has share 0")
        groups.append(GroupSpec(name=gname, sources=tuple(sources), language=graw.get("language"),
                                schedule_params=group_params))
    data_root = top.get("data_root", ".")
    if not isinstance(data_root, str) or not data_root:
        raise ChatflowError(f"{where}.data_root: expected a folder path, got {data_root!r}")
    data_root = _absolute(Path(base_dir) / os.path.expanduser(data_root))
    adaptive = None
    if top.get("adaptive") is not None:
        try:
            adaptive = parse_policy(top["adaptive"], f"{where}.adaptive", [g.name for g in groups])
        except ValueError as exc:
            raise ChatflowError(str(exc)) from None
    spec = MixtureSpec(name=top.get("name", "mixture"), groups=tuple(groups), seq_length=seq_length,
                       schedule_shape=shape.shape, schedule_params=schedule_params, schedule_unit=unit, seed=seed,
                       data_root=data_root, adaptive=adaptive)
    return replace(spec, warnings=_checked_schedule(spec, where))


def load_mixture(path: str | os.PathLike) -> MixtureSpec:
    """The mixture file ``path``, or a packaged one by name (``table1``; :mod:`chatflow_plugin.resources`)."""
    path = named("mixture", path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ChatflowError(f"mixture file not found: {path} {not_found_hint('mixture')}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ChatflowError(f"cannot read mixture file {path}: {exc}") from None
    try:
        data = json.loads(text, object_pairs_hook=_reject_duplicate_keys(str(path)))
    except json.JSONDecodeError as exc:
        raise ChatflowError(f"{path}:{exc.lineno}:{exc.colno}: invalid JSON: {exc.msg}") from None
    except (ValueError, RecursionError) as exc:    # a 5,000-digit integer, nesting past the parser's limit
        raise ChatflowError(f"{path}: invalid JSON: {json_error(exc)}") from None
    spec = parse_mixture(data, where=str(path), base_dir=path.parent)
    return replace(spec, path=path)


def _absolute(path: str | os.PathLike) -> Path:
    return Path(os.path.normpath(os.path.abspath(os.path.expanduser(os.fspath(path)))))


def write_mixture(data: dict[str, Any], path: str | os.PathLike, tree: str | os.PathLike | None = None) -> Path:
    """Write a mixture file (atomically). ``data_root`` becomes relative to the file when both lie inside
    ``tree`` (the output folder being written), else absolute, so that :func:`load_mixture` finds the same
    folder from any working directory."""
    path = Path(path)
    data = dict(data)
    data["data_root"] = path_for_file(data.get("data_root") or ".", path, tree)
    with atomic_file(path) as handle:
        json.dump(data, handle, indent=2, ensure_ascii=False)
        handle.write("\n")
    return path


def parse_source_overrides(items: list[str] | None) -> dict[str, list[str]]:
    """``NAME=PATH[,PATH...]`` items from the command line."""
    out: dict[str, list[str]] = {}
    for item in items or []:
        name, sep, paths = item.partition("=")
        if not sep or not name or not paths:
            raise ChatflowError(f"--source_path expects NAME=PATH[,PATH...], got {item!r}")
        out.setdefault(name, []).extend(p for p in paths.split(",") if p)
    return out
