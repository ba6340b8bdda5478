"""A run's mixture history: the mixtures it trained on and the global sample each took effect at.

A run starts on one mixture; it may change it when it resumes from a checkpoint (a new mixture file, allowed
explicitly), and an adaptive policy (:mod:`.adaptive`) changes it every so many samples. Each change is a
:class:`MixtureRevision`: from global sample ``sample`` on, the sampler follows the new mixture, with every
group's and source's count continuing from what the samples before consumed (:mod:`.sampler`); samples before
it stay what they were. :class:`MixtureHistory` is the list, and :class:`~.batches.MixtureDataset` reads it.

Two ways to write a history down:

* a **history file** (``{"format": "chatflow-mixture-history", "version": 1, "revisions": [...]}``, each
  revision ``{"sample", "step", "by", "catch_up", "mixture"}`` with the whole mixture): what
  ``chatflow mixture --history RUN --export FILE`` writes, and what ``--mixture`` / ``--mixture_config``
  accept in place of a mixture file to re-run a history as a fixed schedule (adaptive policies left out);
* the **run's history of changes** (the run record's ``history`` list, shared with every other setting a
  resumed run was allowed to change): entries ``{"step", "sample", "what", "old", "new", "time", "by"}``.
  A mixture entry (``what: "mixture"``) holds the old and new mixture (``by``: the file it came from), or for
  an adaptive update the old and new group factors (``by: "adaptive"``) with the losses behind them.
  :meth:`MixtureHistory.from_changes` rebuilds the history from the run's first mixture and these entries.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from ..errors import ChatflowError
from ..files import atomic_file
from ..resources import named, not_found_hint
from .mixture import MixtureSpec, load_mixture, parse_mixture

HISTORY_FORMAT = "chatflow-mixture-history"
HISTORY_VERSION = 1
ADAPTIVE = "adaptive"          # ``by`` of an adaptive policy's revisions


def mixture_json(spec: MixtureSpec) -> dict[str, Any]:
    """A mixture as a history records it: every key but ``data_root`` (the sampler reads shards, not sources)."""
    data = spec.to_json()
    data.pop("data_root")
    return data


def now() -> str:
    """The time of a change, as the history's entries spell it (ISO 8601, UTC)."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def change(step: int, what: str, old: Any, new: Any, **extra: Any) -> dict[str, Any]:
    """One entry of a run's history of changes: setting ``what`` went from ``old`` to ``new`` at ``step``."""
    return {"step": int(step), "what": what, "old": old, "new": new, "time": now(), **extra}


@dataclass(frozen=True)
class MixtureRevision:
    """The mixture from global sample ``sample`` on (optimizer step ``step``; ``by``: what made it, e.g. the
    file, ``start`` or ``adaptive``). ``catch_up`` > 0 makes the groups' counts up to the new schedule taken
    from t = 0 over that many samples; 0 (the default) continues from the counts consumed."""

    sample: int
    spec: MixtureSpec
    step: int = 0
    by: str = "start"
    catch_up: float = 0.0
    factors: dict[str, float] | None = None     # an adaptive revision: the factors on the designed mixture


class MixtureHistory:
    """The revisions of one run's mixture, the first at sample 0, samples increasing."""

    def __init__(self, revisions: Sequence[MixtureRevision]):
        revisions = list(revisions)
        if not revisions or revisions[0].sample != 0:
            raise ChatflowError("a mixture history starts at sample 0")
        for before, after in zip(revisions, revisions[1:]):
            if after.sample <= before.sample:
                raise ChatflowError(f"mixture revisions must take effect at increasing samples, got {before.sample} "
                                    f"then {after.sample}")
            if after.spec.seed != before.spec.seed:
                raise ChatflowError(f"the mixture revised at sample {after.sample} changes the seed ({before.spec.seed} "
                                    f"-> {after.spec.seed}), which orders every source's windows: a run keeps its seed")
            if after.catch_up < 0:
                raise ChatflowError(f"catch_up must be >= 0, got {after.catch_up}")
        self.revisions: tuple[MixtureRevision, ...] = tuple(revisions)

    @classmethod
    def start(cls, spec: MixtureSpec) -> "MixtureHistory":
        return cls([MixtureRevision(0, spec)])

    def __len__(self) -> int:
        return len(self.revisions)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, MixtureHistory) and self.to_json() == other.to_json()

    @property
    def current(self) -> MixtureSpec:
        """The mixture of the last revision."""
        return self.revisions[-1].spec

    @property
    def designed(self) -> MixtureSpec:
        """The last mixture given (not made by the adaptive policy): what adaptive factors multiply."""
        return next(r.spec for r in reversed(self.revisions) if r.by != ADAPTIVE)

    @property
    def factors(self) -> dict[str, float]:
        """The adaptive factors in force (empty: none since the last mixture given)."""
        last = self.revisions[-1]
        return dict(last.factors) if last.by == ADAPTIVE and last.factors else {}

    def revised(self, revision: MixtureRevision) -> "MixtureHistory":
        """This history with ``revision`` appended (one at the last revision's sample replaces it)."""
        kept = list(self.revisions)
        if revision.sample < kept[-1].sample:
            raise ChatflowError(f"a mixture revision at sample {revision.sample} comes before the last one "
                                f"(sample {kept[-1].sample}): samples already drawn cannot change")
        if revision.sample == kept[-1].sample:
            kept.pop()
        return MixtureHistory(kept + [revision])

    def map_specs(self, function) -> "MixtureHistory":
        """Every revision's mixture through ``function`` (e.g. a seed or sequence length the dataset fixes)."""
        return MixtureHistory([replace(r, spec=function(r.spec)) for r in self.revisions])

    def fixed(self) -> "MixtureHistory":
        """The same revisions without adaptive policies: the history re-run as a fixed schedule."""
        return self.map_specs(lambda spec: replace(spec, adaptive=None))

    def at(self, sample: int) -> MixtureRevision:
        """The revision in force at global sample ``sample``."""
        return [r for r in self.revisions if r.sample <= sample][-1]

    # -- files ----------------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        return {"format": HISTORY_FORMAT, "version": HISTORY_VERSION,
                "revisions": [{"sample": r.sample, "step": r.step, "by": r.by, "catch_up": r.catch_up,
                               **({"factors": r.factors} if r.factors else {}), "mixture": mixture_json(r.spec)}
                              for r in self.revisions]}

    @classmethod
    def from_json(cls, data: Any, where: str, base_dir: Path = Path(".")) -> "MixtureHistory":
        """A history file's JSON, or a plain mixture's (a history of one revision)."""
        if not is_history(data):
            return cls.start(parse_mixture(data, where=where, base_dir=base_dir))
        if data.get("version") != HISTORY_VERSION or not isinstance(data.get("revisions"), list) or not data["revisions"]:
            raise ChatflowError(f"{where}: a {HISTORY_FORMAT} of version {HISTORY_VERSION} with a non-empty "
                                f"'revisions' list is expected")
        revisions = []
        for i, item in enumerate(data["revisions"]):
            at = f"{where}.revisions[{i}]"
            if not isinstance(item, dict) or not {"sample", "mixture"} <= set(item):
                raise ChatflowError(f"{at}: expected an object with 'sample' and 'mixture'")
            sample, step = item["sample"], item.get("step", 0)
            if any(isinstance(v, bool) or not isinstance(v, int) or v < 0 for v in (sample, step)):
                raise ChatflowError(f"{at}: 'sample' and 'step' must be non-negative integers")
            catch_up = item.get("catch_up", 0.0)
            if isinstance(catch_up, bool) or not isinstance(catch_up, (int, float)) or catch_up < 0:
                raise ChatflowError(f"{at}.catch_up: expected a number >= 0, got {catch_up!r}")
            revisions.append(MixtureRevision(sample, parse_mixture(item["mixture"], f"{at}.mixture", base_dir),
                                             step=step, by=str(item.get("by", "")), catch_up=float(catch_up),
                                             factors=item.get("factors")))
        return cls(revisions)

    @classmethod
    def from_changes(cls, first: Mapping[str, Any], changes: Iterable[Mapping[str, Any]],
                     where: str = "run history") -> "MixtureHistory":
        """Rebuild a run's history from its first mixture (a mixture's or a history file's JSON) and its history
        of changes (entries of other settings are skipped)."""
        history = cls.from_json(dict(first), f"{where} (first mixture)")
        for i, entry in enumerate(changes):
            if entry.get("what") != "mixture":
                continue
            at = f"{where}[{i}] (step {entry.get('step')})"
            try:
                sample, step, new = int(entry["sample"]), int(entry["step"]), entry["new"]
            except (KeyError, TypeError, ValueError):
                raise ChatflowError(f"{at}: a mixture change needs 'step', 'sample' and 'new'") from None
            if entry.get("by") == ADAPTIVE:
                factors = {str(g): float(f) for g, f in dict(new["factors"]).items()}
                spec = history.designed.with_group_factors(factors)
                revision = MixtureRevision(sample, spec, step=step, by=ADAPTIVE, factors=factors)
            else:
                revision = MixtureRevision(sample, parse_mixture(new, f"{at}.new"), step=step,
                                           by=str(entry.get("by", "")), catch_up=float(entry.get("catch_up", 0.0)))
            history = history.revised(revision)
        return history


def mixture_change(history: MixtureHistory, revision: MixtureRevision, **extra: Any) -> dict[str, Any]:
    """The history-of-changes entry of ``revision`` appended to ``history``: the whole old and new mixture, or
    for an adaptive revision the old and new factors (``extra``: e.g. the losses behind them)."""
    if revision.by == ADAPTIVE:
        old, new = {"factors": history.factors}, {"factors": dict(revision.factors or {})}
    else:
        old, new = mixture_json(history.current), mixture_json(revision.spec)
    entry = change(revision.step, "mixture", old, new, sample=int(revision.sample), by=revision.by, **extra)
    if revision.catch_up:
        entry["catch_up"] = revision.catch_up
    return entry


def adaptive_update(history: MixtureHistory, state: Mapping[str, Any] | None, losses: Mapping[str, float | None],
                    sample: int, step: int, decide=lambda value: value
                    ) -> tuple[dict[str, Any], MixtureRevision | None, dict[str, Any] | None]:
    """The adaptive policy of the run's designed mixture, given the held-out ``losses`` measured after ``sample``
    samples (optimizer step ``step``; 0: the run's start, whose losses are only remembered): the policy's new
    state, and the revision from ``sample`` on with its history entry when the factors change (else None, None).
    ``decide`` makes one process's result every process's (a distributed run)."""
    designed = history.designed
    policy = designed.adaptive
    if step == 0:
        return decide(policy.observe(state, losses)), None, None
    probabilities = dict(zip(designed.group_names, designed.schedule().probabilities(float(sample)).tolist()))
    new_state, factors = decide(policy.update(state, losses, probabilities))
    if factors == {g: history.factors.get(g, 1.0) for g in probabilities}:
        return new_state, None, None
    revision = MixtureRevision(int(sample), designed.with_group_factors(factors), step=step, by=ADAPTIVE,
                               factors=factors)
    return new_state, revision, mixture_change(history, revision, losses=new_state["losses"],
                                               signal=new_state["signal"])


def is_history(data: Any) -> bool:
    return isinstance(data, dict) and data.get("format") == HISTORY_FORMAT


def load_mixture_file(path: str | os.PathLike) -> MixtureSpec | MixtureHistory:
    """A mixture file (or a packaged one's name), or a history file (:meth:`MixtureHistory.to_json`) to re-run as a
    fixed schedule."""
    path = named("mixture", path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ChatflowError(f"mixture file not found: {path} {not_found_hint('mixture')}") from None
    except (OSError, UnicodeDecodeError, ValueError):
        data = None                  # load_mixture says what is wrong, with line and column
    if is_history(data):
        return MixtureHistory.from_json(data, str(path), base_dir=path.parent)
    return load_mixture(path)


def write_history(history: MixtureHistory, path: str | os.PathLike) -> Path:
    path = Path(path)
    with atomic_file(path) as handle:
        json.dump(history.to_json(), handle, indent=2, ensure_ascii=False)
        handle.write("\n")
    return path
