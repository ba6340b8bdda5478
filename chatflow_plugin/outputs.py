"""Output folders: which ones the project may replace, who is writing one, and what killed runs left behind.

**Ownership.** Every folder the project writes (a dataset, a converted or expanded model, triples, a run, the
demo) holds a marker, ``.chatflow-output.json``: ``{"kind", "created_by", "owns"}``, ``owns`` listing the names of
the entries the project put there (or, for a run that keeps adding checkpoints, the patterns its kind declares).
What a marker may claim is bounded by its kind (:class:`OutputKind`): the names or patterns of the regular files
and of the folders that kind of output writes (a dataset: its ``manifest.json`` and the files that manifest
lists; a run: its documented entries). An entry is the project's only if the marker names it, the kind writes
an entry of that name *and type* there (a folder where the kind writes a file is not its own; nor is a symbolic
link), and, for patterns, only the kind's own patterns count (a hand-written ``"*"`` claims nothing).
``--force`` replaces a folder only if it holds a marker of the same kind and nothing but the project's entries
(:func:`check_replaceable`): never a folder without the marker (the user's own, or one written by another
tool), never one where a file was added by hand, never a plain file, never a symbolic link. An empty folder may
always be replaced. Nor is an output ever a file or folder the same run reads, a folder holding one, or a
folder inside an input folder (:func:`check_not_input`), with or without ``--force``.

A folder a command fills over time (a training run, the demo) is opened with :func:`output_folder`: an existing
folder without a marker is used only if none of its entries is one the command writes (a scheduler's log file
may sit there; a ``log.jsonl`` or ``final/`` may not), and its marker then claims only the command's entries.

**The writer's lock.** While a command writes an output, ``.<name>.lock`` sits next to it, created
exclusively and holding the writer's pid, host, process start time and command line (:func:`output_lock`).
A second writer of the same output is refused with the owner named; the thread that holds a lock may take it
again (a command that checks its outputs first and writes them later holds their locks throughout). A lock
whose process is gone (same host, and the pid is not running, is a zombie or belongs to a process started at
another time) is stale: it is taken over with a warning. A lock without a readable owner record (empty,
garbage: a writer killed between creating it and writing it) is taken over once it is
:data:`UNREADABLE_LOCK_AGE` seconds old, with a warning; a writer fills its lock at once. A lock taken on another
host cannot be checked and is always respected.

**Leftovers.** Temporary siblings that killed runs leave (``.<name>.XXXXXXXX.partial`` folders,
``.<name>.partial``, ``.<name>.old-<pid>``, ``.<name>.XXXXXXXX.tmp`` files) are removed at the next run's
start, under the lock, so no other writer can own them (:func:`remove_leftovers`).

:func:`atomic_directory` combines the three with the atomic rename of :mod:`chatflow_plugin.files`.

**A failure before any result** (a refused input or option, Ctrl-C) leaves the file system around an output as
it found it (:func:`undone_if_unused`, part of :func:`output_lock`): no new empty or marker-only folder, parent
folders included, and no marker added to a folder the user had.

**Reuse.** A re-run that skips a finished stage says so, one line per stage (:func:`reused`).
"""
from __future__ import annotations

import contextlib
import fnmatch
import json
import os
import re
import shutil
import socket
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

from .errors import ChatflowError
from .files import atomic_file, is_write_error, permissions, write_error

MARKER = ".chatflow-output.json"
LOCK_SUFFIX = ".lock"


# ---------------------------------------------------------------------------------------------
# Ownership


@dataclass(frozen=True)
class OutputKind:
    """One kind of output folder and what its writer puts there.

    ``files`` and ``folders``: names or glob patterns of the regular files and of the folders it writes (None:
    any name, as for a model folder that keeps the extra files of the model it came from; the marker must then
    name each entry). ``listed(folder)``: names of further regular files a file of the output lists (a
    dataset's manifest lists its token and mask files). Only the patterns declared here may stand in a marker
    for names; a marker's other patterns claim nothing. ``nested``: each of its folders is an output of the same
    kind (a split dataset's parts), the project's only if it holds that kind's marker and only its own entries.
    """

    name: str
    files: tuple[str, ...] | None = None
    folders: tuple[str, ...] | None = None
    listed: Callable[[Path], Iterable[str]] | None = None
    nested: bool = False

    def patterns(self) -> tuple[str, ...]:
        """The kind's own glob patterns (what a marker may name instead of single entries)."""
        return tuple(p for p in (self.files or ()) + (self.folders or ()) if _is_pattern(p))

    def entries(self) -> tuple[str, ...]:
        """Everything the kind declares, names and patterns: the ``owns`` of a folder it fills over time."""
        return tuple(self.files or ()) + tuple(self.folders or ())

    def writes(self, name: str, folder: bool | None = None, listed: Iterable[str] = ()) -> bool:
        """Whether the kind writes an entry ``name`` (a folder if ``folder``, a regular file if not; None:
        either)."""
        def fits(patterns: tuple[str, ...] | None) -> bool:
            return patterns is None or any(fnmatch.fnmatchcase(name, p) for p in patterns)
        as_file = fits(self.files) or name in listed
        if folder is None:
            return as_file or fits(self.folders)
        return fits(self.folders) if folder else as_file


def as_kind(kind: "OutputKind | str") -> OutputKind:
    """A kind given by name only writes entries of any name and type, each named by its marker."""
    return kind if isinstance(kind, OutputKind) else OutputKind(kind)


def _is_pattern(name: str) -> bool:
    return any(c in name for c in "*?[")


def _created_by() -> str:
    from . import __version__

    return f"chatflow-plugin {__version__}"


def write_marker(directory: str | os.PathLike, kind: "OutputKind | str", owns: Sequence[str] | None = None) -> None:
    """Mark ``directory`` as the project's ``kind`` output owning ``owns`` (default: what it holds now)."""
    directory = Path(directory)
    if owns is None:
        owns = sorted(name for name in os.listdir(directory) if name != MARKER)
    with atomic_file(directory / MARKER, encoding="utf-8") as handle:
        json.dump({"kind": as_kind(kind).name, "created_by": _created_by(), "owns": list(owns)}, handle, indent=2)
        handle.write("\n")


def read_marker(directory: str | os.PathLike) -> dict | None:
    """The marker of ``directory`` (None: none, or not a marker the project wrote)."""
    path = Path(directory) / MARKER
    try:
        marker = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not (isinstance(marker, dict) and isinstance(marker.get("kind"), str)
            and isinstance(marker.get("owns"), list) and all(isinstance(p, str) for p in marker["owns"])):
        return None
    return marker


def foreign_entries(directory: str | os.PathLike, owns: Iterable[str], kind: "OutputKind | str" = "") -> list[str]:
    """Entries of ``directory`` that are not the project's: not named by ``owns`` (names, or patterns the
    ``kind`` declares), or not an entry of that name and type the kind writes (see :class:`OutputKind`)."""
    kind = as_kind(kind)
    directory = Path(directory)
    owns = list(owns)
    names = {name for name in owns if not _is_pattern(name)}
    patterns = [p for p in owns if p in kind.patterns()]
    listed = set(kind.listed(directory)) if kind.listed is not None else set()
    foreign = []
    for name in os.listdir(directory):
        if name == MARKER:
            continue
        entry = directory / name
        claimed = name in names or any(fnmatch.fnmatchcase(name, p) for p in patterns)
        if entry.is_symlink() or not claimed or not kind.writes(name, entry.is_dir(), listed):
            foreign.append(name + ("/" if entry.is_dir() and not entry.is_symlink() else ""))
        elif kind.nested and entry.is_dir():
            inner = read_marker(entry)
            if inner is None or inner["kind"] != kind.name:
                foreign.append(name + "/")
            else:
                foreign += [f"{name}/{inside}" for inside in foreign_entries(entry, inner["owns"], kind)]
    return sorted(foreign)


def check_replaceable(path: str | os.PathLike, kind: "OutputKind | str", flag: str = "--force") -> None:
    """Refuse unless ``path`` is absent, an empty folder, or a ``kind`` output of the project holding only its
    own entries (see the module docstring)."""
    path, kind = Path(path), as_kind(kind)
    if not path.exists() and not path.is_symlink():
        return
    if path.is_symlink():
        raise ChatflowError(f"{path} is a symbolic link; {flag} replaces only a folder chatflow wrote (give the "
                            f"folder itself, or remove the link)")
    if not path.is_dir():
        raise ChatflowError(f"{path} is a file, not a folder chatflow wrote; {flag} will not replace it "
                            f"(remove it yourself or choose another output)")
    if not os.listdir(path):
        return
    marker = read_marker(path)
    if marker is None:
        raise ChatflowError(f"{path} holds no {MARKER}: it is not a folder chatflow wrote, so {flag} will not "
                            f"replace it (remove it yourself or choose another output)")
    if marker["kind"] != kind.name:
        raise ChatflowError(f"{path} holds a chatflow {marker['kind']}, not a {kind.name}; {flag} replaces only an "
                            f"output of the same kind (remove it yourself or choose another output)")
    foreign = foreign_entries(path, marker["owns"], kind)
    if foreign:
        raise ChatflowError(f"{path} holds files chatflow did not write ({_shown(foreign)}); {flag} will not "
                            f"replace it (move them away or choose another output)")


def _shown(names: Sequence[str]) -> str:
    return ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")


def _resolved(path: str | os.PathLike) -> Path:
    return Path(os.path.realpath(os.path.expanduser(os.fspath(path))))


def check_not_input(output: str | os.PathLike, inputs: Iterable[str | os.PathLike | None],
                    what: str = "the output") -> None:
    """Refuse an output that is one of the run's ``inputs`` (None entries ignored), a folder holding one, or a
    path inside an input folder."""
    out = _resolved(output)
    for given in inputs:
        if given is None or given == "":
            continue
        source = _resolved(given)
        if source == out or out in source.parents:
            held = "is" if source == out else "holds"
            raise ChatflowError(f"{what} {output} {held} {given}, an input of this run; write the output "
                                f"elsewhere")
        if source in out.parents and source.is_dir():
            raise ChatflowError(f"{what} {output} is inside {given}, an input folder of this run; write the "
                                f"output elsewhere")


# ---------------------------------------------------------------------------------------------
# The writer's lock


def lock_path(output: str | os.PathLike) -> Path:
    out = _resolved(output)
    return out.parent / f".{out.name}{LOCK_SUFFIX}"


def _process_start(pid: int) -> str | None:
    """The start time of process ``pid`` (clock ticks since boot, Linux), or None if unknown/not running."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return None if fields[0] == "Z" else fields[19]   # state, ..., starttime (field 22 of proc(5))


def _owner_record() -> dict:
    return {"pid": os.getpid(), "host": socket.gethostname(), "process_start": _process_start(os.getpid()),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "command": " ".join(sys.argv)[:500]}


def _read_owner(path: Path) -> dict | None:
    try:
        owner = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise
    except (OSError, ValueError):
        return None
    return owner if isinstance(owner, dict) else None


UNREADABLE_LOCK_AGE = 30.0   # seconds after which a lock without a readable owner record is taken over


def _valid_owner(owner: dict | None) -> bool:
    """An owner record a writer wrote: a host name and a positive pid."""
    return (isinstance(owner, dict) and isinstance(owner.get("host"), str) and bool(owner["host"])
            and isinstance(owner.get("pid"), int) and not isinstance(owner["pid"], bool) and owner["pid"] > 0)


def _lock_age(path: Path) -> float | None:
    try:
        return max(0.0, time.time() - path.stat().st_mtime)
    except FileNotFoundError:
        return None


def _owner_running(owner: dict | None, path: Path) -> bool:
    """Whether the lock's owner may still be writing (unknown hosts and unreadable fresh locks: yes)."""
    if not _valid_owner(owner):   # being written this instant, or garbage: trust it only while fresh
        age = _lock_age(path)
        return age is not None and age < UNREADABLE_LOCK_AGE
    if owner["host"] != socket.gethostname():
        return True
    pid = owner["pid"]
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    start = _process_start(pid)
    if start is None:
        return not Path("/proc").is_dir()     # no /proc: the pid exists, assume it is the owner
    return owner.get("process_start") in (None, start)


def _describe(owner: dict | None) -> str:
    if not _valid_owner(owner):
        return "another process"
    return (f"process {owner.get('pid')} on {owner.get('host')} (since {owner.get('started')}: "
            f"{str(owner.get('command', '?'))[:120]})")


def _take_stale(path: Path, owner: dict | None) -> None:
    """Move a stale lock away; if another process replaced it meanwhile, put that one back."""
    aside = path.with_name(f"{path.name}.stale-{os.getpid()}")
    try:
        os.replace(path, aside)
    except FileNotFoundError:
        return
    try:
        if _read_owner(aside) != owner:     # not the lock we judged stale: restore it (unless taken again)
            with contextlib.suppress(FileExistsError):
                os.link(aside, path)
    except FileNotFoundError:
        pass
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(aside)
    if _valid_owner(owner):
        print(f"warning: removed the stale lock {path} of {_describe(owner)}, which is no longer running",
              file=sys.stderr)
    else:
        print(f"warning: removed the lock {path}: it holds no owner record (empty or unreadable) and is over "
              f"{UNREADABLE_LOCK_AGE:.0f} s old, so a writer was killed while creating it", file=sys.stderr)


_HELD: dict[Path, list] = {}   # locks this process holds: path -> [(pid, thread id), depth]


@contextlib.contextmanager
def output_lock(output: str | os.PathLike, what: str = "", wait: float = 0.0,
                on_wait: Callable[[str], None] | None = None) -> Iterator[Path]:
    """Hold the lock of ``output`` for the block; refuse if another live process (or another thread of this
    one) holds it, or with ``wait`` (seconds between checks) wait until it lets go, calling ``on_wait`` once
    with the owner's description. The thread holding it may take it again: the lock is released when the
    outermost block ends. A block that fails before writing anything leaves no new folder behind
    (:func:`undone_if_unused`)."""
    with undone_if_unused(output):
        with _locked(output, what, wait, on_wait) as path:
            yield path


@contextlib.contextmanager
def _locked(output: str | os.PathLike, what: str, wait: float,
            on_wait: Callable[[str], None] | None) -> Iterator[Path]:
    path = lock_path(output)
    holder = (os.getpid(), threading.get_ident())
    held = _HELD.get(path)
    if held is not None and held[0][0] != os.getpid():     # inherited by a forked child: not its lock
        held = None
    if held is not None and held[0] == holder:
        held[1] += 1
        try:
            yield path
        finally:
            held[1] -= 1
        return
    while held is not None and wait:            # another thread of this process holds it
        time.sleep(wait)
        held = _HELD.get(path)
    if held is not None:
        raise ChatflowError(f"{what or output} is being written by another thread of this process (lock {path})")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise write_error(exc, path.parent) from None
    record = json.dumps(_owner_record()).encode()
    attempts = 0
    while attempts < 5:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            try:
                owner = _read_owner(path)
            except FileNotFoundError:
                attempts += 1
                continue
            if _owner_running(owner, path):
                if not wait:
                    if not _valid_owner(owner):
                        raise ChatflowError(
                            f"{what or output} is locked by {path}, which holds no owner record yet (a writer "
                            f"creating it, or one killed meanwhile); it is taken over once it is "
                            f"{UNREADABLE_LOCK_AGE:.0f} s old: try again then") from None
                    raise ChatflowError(f"{what or output} is being written by {_describe(owner)}: two runs must "
                                        f"not write one output; wait for it to finish (if that process is gone, "
                                        f"delete the lock {path})") from None
                if on_wait is not None:
                    on_wait(_describe(owner))
                    on_wait = None
                time.sleep(wait)
                continue
            _take_stale(path, owner)
            attempts += 1
            continue
        except OSError as exc:
            raise write_error(exc, path) from None
        try:
            os.write(fd, record)
        except OSError as exc:
            os.close(fd)
            os.unlink(path)
            raise write_error(exc, path) from None
        os.close(fd)
        break
    else:
        raise ChatflowError(f"could not take the lock {path} of {output} (other processes keep taking it)")
    _HELD[path] = [holder, 0]
    try:
        yield path
    finally:
        _HELD.pop(path, None)
        with contextlib.suppress(OSError):
            if _read_owner(path) == json.loads(record):
                os.unlink(path)


# ---------------------------------------------------------------------------------------------
# A failure before any result: no new folder left behind


def _entries(folder: Path) -> set[str] | None:
    """The names in ``folder`` (None: it is not a folder, or a symbolic link to one)."""
    if folder.is_symlink():
        return None
    try:
        return set(os.listdir(folder))
    except OSError:
        return None


@contextlib.contextmanager
def undone_if_unused(output: str | os.PathLike) -> Iterator[None]:
    """If the block fails (an invalid input or option, Ctrl-C) before writing anything into ``output``, undo
    what the block did to the file system around it: ``output`` and its parent folders that the block created
    are removed again while they hold nothing but the marker, and a marker the block added to a folder that
    existed is removed while the folder holds what it held before. Nothing that existed before the block is
    ever removed, and nothing once a result was written (a folder holding more than the marker is left as is).
    """
    out = Path(os.path.abspath(os.path.expanduser(os.fspath(output))))
    created = []                  # folders missing now, deepest first: the block may create them
    for folder in (out, *out.parents):
        if folder.exists() or folder.is_symlink():
            break
        created.append(folder)
    before = None if created and created[0] == out else _entries(out)
    try:
        yield
    except BaseException:
        with contextlib.suppress(OSError):
            now = _entries(out)
            if before is not None and MARKER not in before and now == before | {MARKER}:
                (out / MARKER).unlink()        # the user's folder as it was
            for folder in created:
                if not os.path.lexists(folder):     # never made (or already removed)
                    continue
                now = _entries(folder)
                if now is None or now - {MARKER}:
                    break
                if now:
                    (folder / MARKER).unlink()
                folder.rmdir()
        raise


# ---------------------------------------------------------------------------------------------
# A finished output reused


def reused(stage: str, output: str | os.PathLike, finished: str | os.PathLike | None = None,
           redo: str = "--force") -> str:
    """The line a re-run prints for a ``stage`` it does not run again because its ``output`` is finished:
    ``reusing <stage>: <output> (finished <time>; <redo> to redo)``, the time being when ``finished`` (the file
    whose presence makes the stage finished; default ``output``) was written."""
    try:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(os.stat(finished or output).st_mtime))
    except OSError:
        when = "earlier"
    return f"reusing {stage}: {output} (finished {when}; {redo} to redo)"


# ---------------------------------------------------------------------------------------------
# Leftovers of killed runs


def leftover_names(name: str) -> re.Pattern:
    """Names of the temporary siblings of an output called ``name`` (see the module docstring)."""
    n = re.escape(name)
    return re.compile(rf"^\.{n}(\.[a-z0-9_]{{8}})?\.partial$|^\.{n}\.old-\d+$|^\.{n}\.[a-z0-9_]{{8}}\.tmp$")


def remove_leftovers(output: str | os.PathLike) -> list[Path]:
    """Delete what killed runs left next to ``output``; call it only while holding the output's lock."""
    out = Path(os.path.abspath(output))
    if not out.parent.is_dir():
        return []
    pattern = leftover_names(out.name)
    removed = []
    for entry in out.parent.iterdir():
        if pattern.match(entry.name):
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                with contextlib.suppress(FileNotFoundError):
                    entry.unlink()
            removed.append(entry)
    return removed


# ---------------------------------------------------------------------------------------------
# Whole folders, atomically


def replace_directory(source: str | os.PathLike, target: str | os.PathLike) -> None:
    """Rename the complete directory ``source`` to ``target``; an existing ``target`` is moved aside
    first and deleted only once ``source`` is in its place."""
    source, target = Path(source), Path(target)
    if target.exists() or target.is_symlink():
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        os.replace(target, old)
        os.replace(source, target)
        if old.is_dir() and not old.is_symlink():
            shutil.rmtree(old, ignore_errors=True)
        else:
            old.unlink()
    else:
        os.replace(source, target)


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike, kind: str, force: bool = False,
                     inputs: Iterable[str | os.PathLike | None] = (), owns: Sequence[str] | None = None
                     ) -> Iterator[Path]:
    """Yield a temporary directory next to ``path``; move it onto ``path`` only if the block succeeds.

    Under the output's lock: an existing ``path`` is an error unless ``force``, and then it must be
    replaceable (:func:`check_replaceable`); leftovers of killed runs are removed; the finished folder gets
    the ``kind`` marker (owning what it holds, or ``owns``) and replaces ``path`` only once complete. ``path``
    must not be or hold one of ``inputs``. A full or read-only disk is a :class:`ChatflowError` naming the file.
    The block writes the file that makes the folder load (a manifest, a model's config) with :func:`write_last`,
    so that nothing, not even the marker, is written after it.
    """
    path = Path(path)
    check_not_input(path, inputs)
    with output_lock(path):        # creates path's parent folders (removed again if the block fails)
        if path.exists() or path.is_symlink():
            if not force:
                raise ChatflowError(f"output directory {path} already exists (pass --force to replace it)")
            check_replaceable(path, kind)
        remove_leftovers(path)
        try:
            tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent))
            os.chmod(tmp, permissions(0o777))   # mkdtemp makes 0700; the folder gets the mode mkdir would give it
        except OSError as exc:
            raise write_error(exc, path.parent) from None
        try:
            write_marker(tmp, kind, owns or [])          # completed below, or by write_last
            yield tmp
            marker = read_marker(tmp)
            if owns is None and (marker is None or not set(os.listdir(tmp)) - {MARKER} <= set(marker["owns"])):
                write_marker(tmp, kind)
            replace_directory(tmp, path)
        except BaseException as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            if is_write_error(exc):
                raise write_error(exc, path) from None
            raise


def write_last(folder: str | os.PathLike, name: str, text: str) -> Path:
    """Write ``name``, the file whose presence makes an :func:`atomic_directory`'s temporary ``folder`` load (a
    dataset's ``manifest.json``, a model's ``config.json``), as the folder's very last file: its marker is
    completed first (owning what the folder holds and ``name``), then ``name`` appears atomically. So a kill at
    any moment never leaves a ``.partial`` folder that loads."""
    folder = Path(folder)
    marker = read_marker(folder)
    if marker is None:
        raise ChatflowError(f"{folder}: write_last writes into the temporary folder of an atomic_directory")
    write_marker(folder, marker["kind"], sorted(set(os.listdir(folder)) - {MARKER} | {name}))
    with atomic_file(folder / name, encoding="utf-8") as handle:
        handle.write(text)
    return folder / name


# ---------------------------------------------------------------------------------------------
# Folders filled over time


@contextlib.contextmanager
def output_folder(path: str | os.PathLike, kind: OutputKind, replace: bool = False,
                  advice: str = "give another --output_dir") -> Iterator[Path]:
    """Hold ``path``'s lock for the block, with ``path`` a ``kind`` folder of the project the block fills over
    time (a run, the demo).

    ``replace`` (``--force``): delete it first, which only a ``kind`` output holding nothing but its own entries
    may be (:func:`check_replaceable`). A folder of another kind is refused. An existing folder without a marker
    (not the project's) is used only if none of its entries is one the kind writes, and is then marked as
    owning the kind's entries only: what was there stays the user's (said in a warning)."""
    path = Path(path)
    with output_lock(path):
        if replace and (path.exists() or path.is_symlink()):
            check_replaceable(path, kind)
            shutil.rmtree(path)
        remove_leftovers(path)
        if path.is_symlink() and not path.is_dir():
            raise ChatflowError(f"{path} is a broken symbolic link; {advice}")
        if path.exists() and not path.is_dir():
            raise ChatflowError(f"{path} is a file, not a folder; {advice}")
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise write_error(exc, path) from None
        marker = read_marker(path)
        if marker is None:
            present = sorted(name for name in os.listdir(path) if name != MARKER)
            colliding = [name + ("/" if (path / name).is_dir() else "") for name in present if kind.writes(name)]
            if colliding:
                raise ChatflowError(f"{path} holds entries chatflow did not write where a {kind.name} writes its own "
                                    f"({_shown(colliding)}): it is not a folder chatflow wrote, and they would be "
                                    f"overwritten; {advice} (or move them away)")
            if present:
                print(f"warning: {path} holds entries chatflow did not write ({_shown(present)}); they are left "
                      f"as they are and stay yours (the {kind.name} claims only its own entries)", file=sys.stderr)
            write_marker(path, kind, kind.entries())
        elif marker["kind"] != kind.name:
            raise ChatflowError(f"{path} holds a chatflow {marker['kind']}, not a {kind.name}; {advice}")
        yield path
