"""The demo's groups and languages: the paper's six groups as the packaged mixture file defines them.

``models/mixtures/tiny_corpora.json`` is the one place that names the groups (``en_corpus``, ``zh_corpus``,
``parallel``, ``en_inst``, ``zh_inst``, ``code``), their alpha/beta, source kinds and ``language``. The data
folders the demo splits, the groups its tokenizer, foundation and vocabulary expansion read, and the
per-language curves of its report all follow from that file and :mod:`chatflow_plugin.languages`.
"""
from __future__ import annotations

from functools import lru_cache

from ..data.mixture import GroupSpec, MixtureSpec, load_mixture
from ..languages import one_language
from ..resources import resource

BASE_MIXTURE = "models/mixtures/tiny_corpora.json"   # a packaged file (chatflow_plugin.resources)
SOURCE_LANGUAGE = "en"      # the foundation's language
TARGET_LANGUAGE = "zh"      # the language the demo adapts the foundation to


@lru_cache(maxsize=1)
def base_mixture() -> MixtureSpec:
    """The demo's six groups with the paper's alpha/beta (the packaged mixture file, parsed)."""
    return load_mixture(resource(BASE_MIXTURE))


def groups_in(language: str, kinds: tuple[str, ...] | None = None) -> list[str]:
    """Names of the base groups written in one language (``en``: en_corpus, en_inst), optionally only those
    whose sources are all of ``kinds`` (``("corpus",)``: en_corpus). Several-language groups never count."""
    return [g.name for g in base_mixture().groups if _language(g) == language
            and (kinds is None or all(s.kind in kinds for s in g.sources))]


def group_languages(spec: MixtureSpec | None = None) -> dict[str, str | None]:
    """Group name -> the table language code its ``language`` names (None: several languages or unknown)."""
    return {g.name: _language(g) for g in (spec or base_mixture()).groups}


def _language(group: GroupSpec) -> str | None:
    found = one_language(group.language)
    return found.code if found else None
