"""The demo's groups and languages, from its base mixture file.

The base mixture names the groups (the paper's six: ``en_corpus``, ``zh_corpus``, ``parallel``, ``en_inst``,
``zh_inst``, ``code``), their alpha/beta, source kinds and ``language``: ``models/mixtures/tiny_corpora.json``
(Chinese, over the bundled corpora) by default, ``models/mixtures/demo_ja.json`` for Japanese, or any file of
the same shape (``chatflow demo --mixture``). The data folders the demo splits (one per group), the groups its
tokenizer, foundation and vocabulary expansion read, and the per-language curves of its report all follow from
that file and :mod:`chatflow_plugin.languages`: the foundation's language is English, the target language is
the mixture's one other language (its prompts, name and the scripts mined for it come from the table).
"""
from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from ..data.mixture import GroupSpec, MixtureSpec, load_mixture
from ..errors import ChatflowError
from ..languages import get_language, one_language
from ..resources import named, resource

BASE_MIXTURE = "models/mixtures/tiny_corpora.json"   # a packaged file (chatflow_plugin.resources)
SOURCE_LANGUAGE = "en"      # the foundation's language


@lru_cache(maxsize=8)
def _load(path: Path) -> MixtureSpec:
    return load_mixture(path)


def base_mixture(path: str | os.PathLike | None = None) -> MixtureSpec:
    """The demo's groups with their alpha/beta: the mixture file ``path`` (default: the packaged Chinese one). A
    path that does not exist is looked up among the packaged files too (``models/mixtures/demo_ja.json`` works
    from any directory after ``pip install``)."""
    if not path:
        return _load(resource(BASE_MIXTURE))
    return _load(named("mixture", path).resolve())


def groups_in(language: str, kinds: tuple[str, ...] | None = None, spec: MixtureSpec | None = None) -> list[str]:
    """Names of the base groups written in one language (``en``: en_corpus, en_inst), optionally only those
    whose sources are all of ``kinds`` (``("corpus",)``: en_corpus). Several-language groups never count."""
    return [g.name for g in (spec or base_mixture()).groups if _language(g) == language
            and (kinds is None or all(s.kind in kinds for s in g.sources))]


def group_languages(spec: MixtureSpec | None = None) -> dict[str, str | None]:
    """Group name -> the table language code its ``language`` names (None: several languages or unknown)."""
    return {g.name: _language(g) for g in (spec or base_mixture()).groups}


def target_language(spec: MixtureSpec | None = None) -> str:
    """The language the demo adapts the English foundation to: the mixture's one single-language tag besides
    English; a mixture without an English corpus group or with several other languages is refused."""
    spec = spec or base_mixture()
    languages = dict.fromkeys(code for code in group_languages(spec).values() if code is not None)
    others = [code for code in languages if code != SOURCE_LANGUAGE]
    if not groups_in(SOURCE_LANGUAGE, ("corpus",), spec) or len(others) != 1:
        raise ChatflowError(f"{spec.name}: the demo needs a corpus group in English (the foundation) and groups in "
                            f"exactly one other language (the target); its groups' languages are "
                            f"{', '.join(languages) or 'none'}")
    get_language(others[0])
    return others[0]


def _language(group: GroupSpec) -> str | None:
    found = one_language(group.language)
    return found.code if found else None
