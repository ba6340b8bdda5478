"""Language fidelity: the share of generated responses written in the language of their prompt.

A model adapted to a target language should answer a Chinese prompt in Chinese and an English one in
English; CLO (arXiv 2505.14297) reports this share next to task quality. Detection here needs no
model and no download:

1. **Script.** Letters are counted per Unicode script (Han, kana, Hangul, Cyrillic, Arabic,
   Devanagari, Greek, Hebrew, Thai, ... and Latin); digits, punctuation, symbols, whitespace, URLs
   and fenced code blocks do not count. A Han, kana or Hangul character weighs 3 letters (one CJK
   character carries about as much text as a short Latin-script word), so "这是Python的一个function"
   is Chinese. The script with the largest weight wins; fewer than 2 weighted letters is
   *undetermined*.
2. **Language from script.** Han without kana -> ``zh``; Han/kana with at least 10 % kana -> ``ja``;
   Hangul -> ``ko``; Cyrillic -> ``uk`` when it has Ukrainian-only letters (і ї є ґ), ``ru`` when it
   has ы э ё, else only "Cyrillic"; single-language scripts (Greek, Hebrew, Thai, Georgian, ...)
   map to their language; shared ones (Arabic, Devanagari) stay at script level.
3. **Latin-script heuristic.** The words are matched against short lists of each language's most
   frequent function words (en, de, fr, es, it, pt, nl, sv, pl, tr, id, vi), plus letters unique to
   one language (ß, ñ, ã/õ, ł/ą/ę, ğ/ş/ı, ơ/ư/đ ...). A language is named when it has at least two
   hits (one for texts of at most three words) and leads the runner-up by half again; otherwise only
   "Latin" is known. This is a heuristic: short or code-heavy answers may stay undetermined, and
   close relatives (es/pt, sv/no/da) can be confused.

A response *matches* an expected language when its detected language equals it or, when only the
script was determined, when the script is the expected language's script. An undetermined (e.g.
empty) response never matches. :func:`language_fidelity` scores responses already generated;
:func:`evaluate_fidelity` generates them greedily from a model directory (for ``chatflow eval``);
``chatflow fidelity --model DIR --prompts FILE`` does the same from the
shell.
"""
from __future__ import annotations

import json
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from ..errors import ChatflowError, DataError
from ..files import read_jsonl
from ..options import option

UNDETERMINED = "Zyyy"
CJK_WEIGHT = 3
KANA_SHARE_FOR_JAPANESE = 0.10

# (first, last, script) code-point ranges, ISO 15924 script names
_RANGES = sorted([
    (0x0041, 0x005A, "Latn"), (0x0061, 0x007A, "Latn"), (0x00C0, 0x024F, "Latn"), (0x1E00, 0x1EFF, "Latn"),
    (0x0370, 0x03FF, "Grek"), (0x1F00, 0x1FFF, "Grek"),
    (0x0400, 0x052F, "Cyrl"), (0x0530, 0x058F, "Armn"), (0x0590, 0x05FF, "Hebr"),
    (0x0600, 0x06FF, "Arab"), (0x0750, 0x077F, "Arab"), (0x08A0, 0x08FF, "Arab"),
    (0xFB50, 0xFDFF, "Arab"), (0xFE70, 0xFEFF, "Arab"),
    (0x0900, 0x097F, "Deva"), (0x0980, 0x09FF, "Beng"), (0x0A00, 0x0A7F, "Guru"), (0x0A80, 0x0AFF, "Gujr"),
    (0x0B00, 0x0B7F, "Orya"), (0x0B80, 0x0BFF, "Taml"), (0x0C00, 0x0C7F, "Telu"), (0x0C80, 0x0CFF, "Knda"),
    (0x0D00, 0x0D7F, "Mlym"), (0x0D80, 0x0DFF, "Sinh"), (0x0E00, 0x0E7F, "Thai"), (0x0E80, 0x0EFF, "Laoo"),
    (0x0F00, 0x0FFF, "Tibt"), (0x1000, 0x109F, "Mymr"), (0x10A0, 0x10FF, "Geor"), (0x1200, 0x139F, "Ethi"),
    (0x1780, 0x17FF, "Khmr"),
    (0x1100, 0x11FF, "Hang"), (0x3130, 0x318F, "Hang"), (0xA960, 0xA97F, "Hang"), (0xAC00, 0xD7AF, "Hang"),
    (0x3040, 0x309F, "Kana"), (0x30A0, 0x30FF, "Kana"), (0x31F0, 0x31FF, "Kana"), (0xFF66, 0xFF9D, "Kana"),
    (0x3400, 0x4DBF, "Hani"), (0x4E00, 0x9FFF, "Hani"), (0xF900, 0xFAFF, "Hani"), (0x20000, 0x2FA1F, "Hani"),
])
_STARTS = [r[0] for r in _RANGES]

# scripts used by one language only
_SCRIPT_LANGUAGE = {"Grek": "el", "Armn": "hy", "Hebr": "he", "Beng": "bn", "Guru": "pa", "Gujr": "gu",
                    "Orya": "or", "Taml": "ta", "Telu": "te", "Knda": "kn", "Mlym": "ml", "Sinh": "si",
                    "Thai": "th", "Laoo": "lo", "Tibt": "bo", "Mymr": "my", "Geor": "ka", "Khmr": "km",
                    "Hang": "ko"}
_LANGUAGE_SCRIPT = {lang: script for script, lang in _SCRIPT_LANGUAGE.items()}
_LANGUAGE_SCRIPT.update({"zh": "Hani", "ja": "Jpan", "yue": "Hani"})
_LANGUAGE_SCRIPT.update({lang: "Cyrl" for lang in ("ru", "uk", "be", "bg", "sr", "mk", "kk", "ky", "mn", "tg", "tt")})
_LANGUAGE_SCRIPT.update({lang: "Arab" for lang in ("ar", "fa", "ur", "ps", "ug", "ckb", "sd")})
_LANGUAGE_SCRIPT.update({lang: "Deva" for lang in ("hi", "mr", "ne", "sa")})
_LANGUAGE_SCRIPT.update({"am": "Ethi", "ti": "Ethi"})

_THREE_LETTER = {"eng": "en", "zho": "zh", "cmn": "zh", "jpn": "ja", "kor": "ko", "rus": "ru", "ukr": "uk",
                 "deu": "de", "ger": "de", "fra": "fr", "fre": "fr", "spa": "es", "ita": "it", "por": "pt",
                 "nld": "nl", "swe": "sv", "pol": "pl", "tur": "tr", "ind": "id", "vie": "vi", "ara": "ar",
                 "hin": "hi", "ell": "el", "heb": "he", "tha": "th", "ben": "bn", "fas": "fa", "pes": "fa"}

_FUNCTION_WORDS = {
    "en": "the of and to in is that it for was on are with as be this by at from have or not you an which "
          "can will they we what how your there",
    "de": "der die und in den von zu das mit sich des auf für ist im dem nicht ein eine als auch es an "
          "werden aus er hat dass sie nach wird bei",
    "fr": "le la les de des et est un une du en que qui dans pour pas au sur ne se ce il elle avec sont "
          "plus par nous vous",
    "es": "el la los las de del y que en un una es por con para no se lo como más pero sus al le ha este "
          "está son también",
    "it": "il la di che e è un una per non in del della con sono si gli le al anche come più ma nel "
          "questo alla dei",
    "pt": "o a os as de do da dos das e que em um uma para com não por é se na no mais como mas foi ao "
          "seu sua também",
    "nl": "de het een en van is dat in te op niet zijn met voor die er ook aan als bij door maar om wordt "
          "zijn naar",
    "sv": "och att det som en är på av för med till den har inte de om ett men var jag sig från kan så",
    "pl": "i w nie na się z że do jest to jak po co ale od są tak za czy jego oraz przez dla być",
    "tr": "ve bir bu da de için ile olarak çok daha gibi olan ne ama en kadar sonra her veya ki",
    "id": "yang dan di dari ini itu dengan untuk tidak dalam akan pada juga ke adalah karena ada saya "
          "mereka atau bisa",
    "vi": "và của là có không một những được cho các trong với người này đã để khi thì từ như",
}
_FUNCTION_WORDS = {lang: set(words.split()) for lang, words in _FUNCTION_WORDS.items()}
_UNIQUE_LETTERS = {"de": "ß", "es": "ñ¿¡", "pt": "ãõ", "pl": "łąęśźżćń", "tr": "ğşı",
                   "vi": "ơưđăạảấầẩẫậắằẳẵặẹẻẽếềểễệỉịọỏốồổỗộớờởỡợụủứừửữựỳỵỷỹ", "sv": "å", "fr": "œ"}
_CYRILLIC_UK = set("іїєґІЇЄҐ")
_CYRILLIC_RU = set("ыэёЫЭЁ")

_CODE_BLOCK = re.compile(r"```.*?(```|$)", re.S)
_URL = re.compile(r"https?://\S+|www\.\S+")
_WORD = re.compile(r"[^\W\d_]+", re.U)


def normalize_language(code: str) -> str:
    """``zh-Hans``, ``zh_CN``, ``zho_Hans``, ``ZH`` -> ``zh``; the language subtag, 2 letters when known."""
    if not isinstance(code, str) or not code.strip():
        raise ChatflowError(f"not a language code: {code!r}")
    base = re.split(r"[-_]", code.strip().lower())[0]
    return _THREE_LETTER.get(base, base)


def script_of_language(code: str) -> str:
    """ISO 15924 script a language is written in (Latin unless listed)."""
    parts = re.split(r"[-_]", code.strip())
    for part in parts[1:]:   # an explicit script subtag wins: zho_Hans, sr-Latn, zh-Hant
        if len(part) == 4 and part.isalpha():
            return "Hani" if part.title() in ("Hans", "Hant") else part.title()
    return _LANGUAGE_SCRIPT.get(normalize_language(code), "Latn")


def _script(ch: str) -> str | None:
    import bisect

    cp = ord(ch)
    i = bisect.bisect_right(_STARTS, cp) - 1
    if i >= 0 and _RANGES[i][0] <= cp <= _RANGES[i][1]:
        return _RANGES[i][2]
    return None


@dataclass(frozen=True)
class Detection:
    """The detected script (ISO 15924; ``Zyyy`` = undetermined) and language code when determinable."""

    script: str
    language: str | None = None
    weights: dict = field(default_factory=dict, compare=False)

    @property
    def determined(self) -> bool:
        return self.script != UNDETERMINED

    def matches(self, expected: str) -> bool:
        if not self.determined:
            return False
        if self.language is not None:
            return self.language == normalize_language(expected)
        return self.script == script_of_language(expected)


def _latin_language(text: str) -> str | None:
    words = [w.lower() for w in _WORD.findall(text)]
    if not words:
        return None
    scores: Counter[str] = Counter()
    for lang, vocabulary in _FUNCTION_WORDS.items():
        scores[lang] = sum(1 for w in words if w in vocabulary)
    lowered = text.lower()
    for lang, letters in _UNIQUE_LETTERS.items():
        if any(ch in lowered for ch in letters):
            scores[lang] += 2
    ranked = scores.most_common(2)
    best, best_score = ranked[0]
    runner_up = ranked[1][1] if len(ranked) > 1 else 0
    needed = 1 if len(words) <= 3 else 2
    if best_score >= needed and best_score >= 1.5 * runner_up and best_score > runner_up:
        return best
    return None


def detect_language(text: str) -> Detection:
    """Script and (where the rules above allow) language of a text; see the module docstring."""
    text = _URL.sub(" ", _CODE_BLOCK.sub(" ", text or ""))
    weights: Counter[str] = Counter()
    for ch in text:
        script = _script(ch)
        if script is None:
            continue
        weights[script] += CJK_WEIGHT if script in ("Hani", "Kana", "Hang") else 1
    cjk = weights.get("Hani", 0) + weights.get("Kana", 0)
    merged = Counter({k: v for k, v in weights.items() if k not in ("Hani", "Kana")})
    if cjk:
        kana_share = weights.get("Kana", 0) / cjk
        merged["Jpan" if kana_share >= KANA_SHARE_FOR_JAPANESE else "Hani"] = cjk
    if not merged or max(merged.values()) < 2:
        return Detection(UNDETERMINED, None, dict(weights))
    script = max(merged, key=merged.get)
    if script == "Hani":
        language = "zh"
    elif script == "Jpan":
        language = "ja"
    elif script == "Cyrl":
        letters = set(text)
        language = "uk" if letters & _CYRILLIC_UK else "ru" if letters & _CYRILLIC_RU else None
    elif script == "Latn":
        language = _latin_language(text)
    else:
        language = _SCRIPT_LANGUAGE.get(script)
    return Detection(script, language, dict(weights))


def language_fidelity(expected: list[str], responses: list[str]) -> dict:
    """Share of responses in their expected language, overall and per language.

    Returns ``{"fidelity": share, "n": n, "matched": k, "undetermined": u, "per_language":
    {lang: {"fidelity", "n", "matched"}}, "detected": {lang: {detected label: count}}}``.
    """
    if len(expected) != len(responses):
        raise ChatflowError(f"{len(expected)} expected languages for {len(responses)} responses")
    if not responses:
        raise ChatflowError("no responses to score")
    per: dict[str, dict] = {}
    detected: dict[str, Counter] = {}
    matched = undetermined = 0
    for lang, response in zip(expected, responses):
        key = normalize_language(lang)
        found = detect_language(response)
        ok = found.matches(lang)
        matched += ok
        undetermined += not found.determined
        row = per.setdefault(key, {"n": 0, "matched": 0})
        row["n"] += 1
        row["matched"] += ok
        label = found.language or found.script
        detected.setdefault(key, Counter())[label] += 1
    for row in per.values():
        row["fidelity"] = row["matched"] / row["n"]
    return {"fidelity": matched / len(responses), "n": len(responses), "matched": matched,
            "undetermined": undetermined, "per_language": per,
            "detected": {k: dict(v) for k, v in detected.items()}}


# ----------------------------------------------------------------------------------------------
# prompts and generation


def load_prompts(path: str | os.PathLike) -> list[tuple[str, str]]:
    """``(prompt, language)`` pairs from a JSONL file or a ``chatflow clo-data`` directory.

    JSONL records are ``{"prompt": ..., "lang": ...}`` or Alpaca ``instruction``/``input`` with an
    optional ``lang``; without ``lang`` the prompt's own detected language is expected, and a prompt
    whose language cannot be determined is an error (say its language explicitly). In a clo-data
    directory every triple's prompt counts, with its ``prompt_lang``.
    """
    path = Path(path)
    if path.is_dir():
        from ..clo.triples import load_triples

        triples = load_triples(path)
        out = []
        for pair in triples.pairs:
            out += [(pair.source_prompt, triples.source_lang), (pair.target_prompt, triples.target_lang)]
        return out
    if not path.is_file():
        raise ChatflowError(f"{path}: no such prompts file")
    out = []
    for number, record in read_jsonl(path):
        where = f"{path}:{number}"
        if not isinstance(record, dict):
            raise DataError("expected a JSON object", where)
        if isinstance(record.get("prompt"), str):
            prompt = record["prompt"]
        elif isinstance(record.get("instruction"), str):
            extra = record.get("input") or ""
            prompt = record["instruction"] + ("\n" + extra if isinstance(extra, str) and extra.strip() else "")
        else:
            raise DataError("expected a string field 'prompt' or 'instruction'", where)
        if not prompt.strip():
            raise DataError("empty prompt", where)
        lang = record.get("lang")
        if lang is None:
            found = detect_language(prompt)
            lang = found.language or {"Hani": "zh", "Jpan": "ja"}.get(found.script)
            if lang is None:
                raise DataError("cannot tell the prompt's language; add a 'lang' field", where)
        elif not isinstance(lang, str) or not lang.strip():
            raise DataError("field 'lang' must be a language code such as 'zh'", where)
        out.append((prompt, lang))
    if not out:
        raise DataError("no prompts", str(path))
    return out


def generate_responses(model_dir: str | os.PathLike, prompts: list[str], *, max_new_tokens: int = 128,
                       batch_size: int = 8, template: str = "chatflow", device: str = "auto",
                       progress: bool = True) -> list[str]:
    """Greedy responses of a HuggingFace causal LM directory to prompts (left-padded batches).

    ``template="chatflow"`` wraps each prompt in the instruction format the model was tuned on
    (:mod:`chatflow_plugin.data.formats`); ``raw`` feeds it as is. A response ends at EOS or where the
    model starts a new ``### Instruction:`` block.
    """
    import torch
    from tqdm import tqdm
    from transformers import AutoModelForCausalLM

    from ..clo.tokens import TextEncoder
    from ..data.formats import INSTRUCTION_HEADER, RESPONSE_HEADER

    if template not in ("chatflow", "raw"):
        raise ChatflowError(f"template must be 'chatflow' or 'raw', got {template!r}")
    encoder = TextEncoder.from_model_dir(model_dir)
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    # the checkpoint's own dtype on GPU (bf16 for LLaMA-2), float32 on CPU
    dtype = "auto" if str(device).startswith("cuda") else torch.float32
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype).to(device).eval()
    texts = [INSTRUCTION_HEADER + p + RESPONSE_HEADER if template == "chatflow" else p for p in prompts]
    order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))   # similar lengths share a batch
    responses: list[str] = [""] * len(texts)
    pad = encoder.pad_id
    with torch.inference_mode(), tqdm(total=len(texts), desc="generating", disable=not progress) as bar:
        for start in range(0, len(order), batch_size):
            rows = order[start:start + batch_size]
            ids = [[encoder.bos_id] + encoder.encode(texts[i]) for i in rows]
            width = max(map(len, ids))
            input_ids = torch.tensor([[pad] * (width - len(x)) + x for x in ids], device=device)
            attention = torch.tensor([[0] * (width - len(x)) + [1] * len(x) for x in ids], device=device)
            out = model.generate(input_ids=input_ids, attention_mask=attention, max_new_tokens=max_new_tokens,
                                 do_sample=False, eos_token_id=encoder.eos_id, pad_token_id=pad)
            for i, row in zip(rows, out[:, width:].tolist()):
                if encoder.eos_id in row:
                    row = row[:row.index(encoder.eos_id)]
                text = encoder.decode(row)
                responses[i] = text.split(INSTRUCTION_HEADER)[0].strip()
            bar.update(len(rows))
    return responses


def evaluate_fidelity(model_dir: str | os.PathLike, prompts_path: str | os.PathLike, *, limit: int | None = None,
                      **generate_kwargs) -> dict:
    """Generate responses to a prompt set and score their language fidelity (for ``chatflow eval``).

    The returned report (see :func:`language_fidelity`) also carries ``samples``: the first
    prompts with their responses and detected languages, for reading.
    """
    items = load_prompts(prompts_path)[:limit]
    responses = generate_responses(model_dir, [p for p, _ in items], **generate_kwargs)
    report = language_fidelity([lang for _, lang in items], responses)
    report["model"] = str(model_dir)
    report["prompts"] = str(prompts_path)
    report["samples"] = [{"prompt": p, "lang": lang, "response": r,
                          "detected": detect_language(r).language or detect_language(r).script}
                         for (p, lang), r in list(zip(items, responses))[:10]]
    return report


@dataclass
class FidelityOptions:
    model: str = option(help="HuggingFace causal LM directory (config.json, weights, tokenizer.model)")
    prompts: str = option(help="JSONL of {prompt, lang} (or Alpaca instruction/input) records, or a "
                          "chatflow clo-data directory")
    max_new_tokens: int = option(128, help="tokens generated per response")
    batch_size: int = option(8, help="prompts per generation batch")
    limit: Optional[int] = option(None, help="use only the first N prompts")
    template: str = option("chatflow", choices=["chatflow", "raw"], help="chatflow: wrap prompts in '### Instruction:' format; raw: as is")
    device: str = option("auto", help="torch device (auto = cuda if available)")
    output: Optional[str] = option(None, help="also write the JSON report here")


def fidelity(options: FidelityOptions) -> dict:
    """Language fidelity: generate an answer to each prompt greedily and report the share written in the
    prompt's language, overall and per language."""
    report = evaluate_fidelity(options.model, options.prompts, limit=options.limit,
                               max_new_tokens=options.max_new_tokens, batch_size=options.batch_size,
                               template=options.template, device=options.device)
    if options.output:
        from ..files import atomic_file

        with atomic_file(options.output, encoding="utf-8") as handle:
            json.dump(report, handle, indent=2, ensure_ascii=False)
    langs = ", ".join(f"{k} {v['fidelity']:.3f} ({v['matched']}/{v['n']})" for k, v in sorted(report["per_language"].items()))
    print(f"language fidelity {report['fidelity']:.3f} ({report['matched']}/{report['n']}; "
          f"undetermined {report['undetermined']}); {langs}")
    return report
