"""The languages and scripts the project knows: one table each, and language detection from them.

Everything that depends on a language reads it here: vocabulary expansion mines the code-point ranges of
:data:`SCRIPTS` a language is written with (``chatflow expand-vocab --language ja``, or ``--script cjk``),
language fidelity and the CLO data builder detect languages with :func:`detect_language`, the demo and
``chatflow fidelity`` take a language's default prompts, and a mixture group's ``language`` (``"en"``,
``"ja"``, ``"en-ja"``) is looked up with :func:`one_language` and :func:`languages_of` (the demo's source and
target languages; the default fields of a parallel source). A language's benchmarks are the records of
``evaluation/registry.py`` with its code (``benchmarks_of_language``). **Adding a language is one**
:class:`Language` **entry** in :data:`LANGUAGES` (and one :class:`Script` entry if its script is new); nothing
else lists languages, scripts or code points.

Shipped with prompts and expansion scripts (tested on real sentences in ``tests/test_languages.py``): English,
Chinese, Japanese, Korean, Vietnamese, Thai, Hindi, Arabic and Russian.

Detection needs no model and no download:

1. **Script.** Letters are counted per script of :data:`SCRIPTS` (digits, punctuation, symbols, whitespace,
   URLs and fenced code blocks do not count). A Han, kana or Hangul character weighs 3 letters (one CJK
   character carries about as much text as a short Latin-script word), so "这是Python的一个function" is
   Chinese. Han and kana together are Japanese (``Jpan``) when kana are at least 10 % of them, else Han. The
   heaviest script wins; fewer than 2 weighted letters is *undetermined* (``Zyyy``).
2. **Language from script.** A script that only one detectable language of the table is written in names it
   (Han -> ``zh``, ``Jpan`` -> ``ja``, Hangul -> ``ko``, Greek -> ``el``, Thai -> ``th`` ...).
3. **Scripts shared by several languages** (Latin, Cyrillic, Arabic, Devanagari ...): each language of the
   script scores one point per word of the text in its short list of most frequent function words and two
   points when one of its own letters occurs (ß, ñ, ã/õ, ł/ą/ę, ğ/ş/ı, ơ/ư/đ; Cyrillic і/ї/є/ґ for ``uk``,
   ы/э/ё for ``ru``). A language is named when it has at least two points (one for texts of at most three
   words) and leads the runner-up by half again; otherwise only the script is known. This is a heuristic:
   short or code-heavy answers may stay undetermined, and close relatives (es/pt, sv/no/da) can be confused.

A text *matches* an expected language when its detected language equals it or, when only the script was
determined, when the script is the expected language's script. An undetermined (e.g. empty) text never
matches.
"""
from __future__ import annotations

import bisect
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable

from .errors import ChatflowError

UNDETERMINED = "Zyyy"                 # ISO 15924 "common": no script determined
KANA_SHARE_FOR_JAPANESE = 0.10


@dataclass(frozen=True)
class Script:
    """A script (ISO 15924 code) or another named set of characters, by Unicode code-point ranges."""

    code: str                                  # ISO 15924 ("Hani"); lowercase for a set that is not a script
    name: str
    ranges: tuple[tuple[int, int], ...]        # inclusive (first, last) code points
    alias: str | None = None                   # the name `chatflow expand-vocab --script` also takes ("cjk")
    weight: int = 1                            # letters one character counts as in detection; 0 = not letters
    parts: tuple[str, ...] = ()                # a script written with others (Jpan): their codes, no ranges


SCRIPTS: dict[str, Script] = {s.code: s for s in (
    Script("Hani", "Han", ((0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xF900, 0xFAFF), (0x20000, 0x2FA1F),
                           (0x30000, 0x3134F)), alias="cjk", weight=3),
    Script("cjk_punct", "CJK punctuation, full-width forms and quotes",
           ((0x00B7, 0x00B7), (0x2014, 0x2014), (0x2018, 0x201F), (0x2026, 0x2026), (0x3000, 0x303F),
            (0xFE10, 0xFE1F), (0xFE30, 0xFE4F), (0xFF00, 0xFFEF)), weight=0),
    Script("Hira", "Hiragana", ((0x3040, 0x309F),), alias="hiragana", weight=3),
    Script("Kana", "Katakana", ((0x30A0, 0x30FF), (0x31F0, 0x31FF), (0xFF66, 0xFF9D)), alias="katakana", weight=3),
    Script("Jpan", "Japanese (Han with hiragana and katakana)", (), parts=("Hani", "Hira", "Kana")),
    Script("Hang", "Hangul", ((0x1100, 0x11FF), (0x3130, 0x318F), (0xA960, 0xA97F), (0xAC00, 0xD7AF)),
           alias="hangul", weight=3),
    Script("Latn", "Latin", ((0x0041, 0x005A), (0x0061, 0x007A), (0x00C0, 0x024F), (0x1E00, 0x1EFF))),
    Script("Grek", "Greek", ((0x0370, 0x03FF), (0x1F00, 0x1FFF))),
    Script("Cyrl", "Cyrillic", ((0x0400, 0x052F),)),
    Script("Armn", "Armenian", ((0x0530, 0x058F),)),
    Script("Hebr", "Hebrew", ((0x0590, 0x05FF),)),
    Script("Arab", "Arabic", ((0x0600, 0x06FF), (0x0750, 0x077F), (0x08A0, 0x08FF), (0xFB50, 0xFDFF),
                              (0xFE70, 0xFEFF))),
    Script("Deva", "Devanagari", ((0x0900, 0x097F),)),
    Script("Beng", "Bengali", ((0x0980, 0x09FF),)),
    Script("Guru", "Gurmukhi", ((0x0A00, 0x0A7F),)),
    Script("Gujr", "Gujarati", ((0x0A80, 0x0AFF),)),
    Script("Orya", "Odia", ((0x0B00, 0x0B7F),)),
    Script("Taml", "Tamil", ((0x0B80, 0x0BFF),)),
    Script("Telu", "Telugu", ((0x0C00, 0x0C7F),)),
    Script("Knda", "Kannada", ((0x0C80, 0x0CFF),)),
    Script("Mlym", "Malayalam", ((0x0D00, 0x0D7F),)),
    Script("Sinh", "Sinhala", ((0x0D80, 0x0DFF),)),
    Script("Thai", "Thai", ((0x0E00, 0x0E7F),)),
    Script("Laoo", "Lao", ((0x0E80, 0x0EFF),)),
    Script("Tibt", "Tibetan", ((0x0F00, 0x0FFF),)),
    Script("Mymr", "Myanmar", ((0x1000, 0x109F),)),
    Script("Geor", "Georgian", ((0x10A0, 0x10FF),)),
    Script("Ethi", "Ethiopic", ((0x1200, 0x139F),)),
    Script("Khmr", "Khmer", ((0x1780, 0x17FF),)),
)}
KANA = tuple(code for code in SCRIPTS["Jpan"].parts if code != "Hani")   # with Han, they make Japanese


@dataclass(frozen=True)
class Language:
    """One language: what detection, vocabulary expansion, prompts and mixtures need to know about it."""

    code: str                                  # ISO 639-1 where there is one ("zh"), else ISO 639-3 ("yue")
    name: str                                  # English name, used in reports ("Chinese")
    script: str                                # ISO 15924 code in SCRIPTS it is written in
    aliases: tuple[str, ...] = ()              # other codes for it (ISO 639-2/3: "zho", "cmn")
    function_words: frozenset[str] = frozenset()   # its most frequent words (detection on a shared script)
    letters: str = ""                          # lowercase letters only it uses among its script's languages
    detectable: bool = True                    # False: text cannot tell it from another language of its script
    prompts: tuple[str, ...] = ()              # default instructions (demo, fidelity) written in this language
    expansion_scripts: tuple[str, ...] = ()    # SCRIPTS mined as new pieces when a tokenizer is expanded for it

    @property
    def prompt(self) -> str | None:
        """The first default prompt (what the demo asks the model it releases)."""
        return self.prompts[0] if self.prompts else None


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


def _same_script(script: str, *codes: str) -> tuple[Language, ...]:
    return tuple(Language(code, name, script) for code, name in zip(codes[::2], codes[1::2]))


LANGUAGES: dict[str, Language] = {lang.code: lang for lang in (
    Language("en", "English", "Latn", ("eng",), _words(
        "the of and to in is that it for was on are with as be this by at from have or not you an which can will "
        "they we what how your there"),
        prompts=("Give three tips for staying healthy and say why they work.",
                 "Explain in two sentences why the sky is blue.",
                 "Write a short note to thank your friend for the help.")),
    Language("zh", "Chinese", "Hani", ("zho", "cmn"),
             prompts=("请用一句话介绍一下长城。", "为什么天空是蓝色的？请简单解释一下。", "给帮助过你的朋友写一张简短的感谢便条。"),
             expansion_scripts=("cjk", "cjk_punct")),
    Language("yue", "Cantonese", "Hani", detectable=False),
    Language("ja", "Japanese", "Jpan", ("jpn",),
             prompts=("健康を保つためのコツを三つ教えてください。", "空が青いのはなぜですか。簡単に説明してください。",
                      "手伝ってくれた友人へのお礼のメッセージを短く書いてください。"),
             expansion_scripts=("cjk", "hiragana", "katakana", "cjk_punct")),
    Language("ko", "Korean", "Hang", ("kor",),
             prompts=("건강을 유지하는 방법을 세 가지 알려 주세요.", "하늘이 왜 파란지 간단히 설명해 주세요.",
                      "도와준 친구에게 짧은 감사 메시지를 써 주세요."),
             expansion_scripts=("hangul",)),
    Language("de", "German", "Latn", ("deu", "ger"), _words(
        "der die und in den von zu das mit sich des auf für ist im dem nicht ein eine als auch es an werden aus "
        "er hat dass sie nach wird bei"), "ß"),
    Language("fr", "French", "Latn", ("fra", "fre"), _words(
        "le la les de des et est un une du en que qui dans pour pas au sur ne se ce il elle avec sont plus par "
        "nous vous"), "œ"),
    Language("es", "Spanish", "Latn", ("spa",), _words(
        "el la los las de del y que en un una es por con para no se lo como más pero sus al le ha este está son "
        "también"), "ñ¿¡"),
    Language("it", "Italian", "Latn", ("ita",), _words(
        "il la di che e è un una per non in del della con sono si gli le al anche come più ma nel questo alla "
        "dei")),
    Language("pt", "Portuguese", "Latn", ("por",), _words(
        "o a os as de do da dos das e que em um uma para com não por é se na no mais como mas foi ao seu sua "
        "também"), "ãõ"),
    Language("nl", "Dutch", "Latn", ("nld",), _words(
        "de het een en van is dat in te op niet zijn met voor die er ook aan als bij door maar om wordt naar")),
    Language("sv", "Swedish", "Latn", ("swe",), _words(
        "och att det som en är på av för med till den har inte de om ett men var jag sig från kan så"), "å"),
    Language("pl", "Polish", "Latn", ("pol",), _words(
        "i w nie na się z że do jest to jak po co ale od są tak za czy jego oraz przez dla być"), "łąęśźżćń"),
    Language("tr", "Turkish", "Latn", ("tur",), _words(
        "ve bir bu da de için ile olarak çok daha gibi olan ne ama en kadar sonra her veya ki"), "ğşı"),
    Language("id", "Indonesian", "Latn", ("ind",), _words(
        "yang dan di dari ini itu dengan untuk tidak dalam akan pada juga ke adalah karena ada saya mereka atau "
        "bisa")),
    Language("vi", "Vietnamese", "Latn", ("vie",), _words(
        "và của là có không một những được cho các trong với người này đã để khi thì từ như"),
        "ơưđăạảấầẩẫậắằẳẵặẹẻẽếềểễệỉịọỏốồổỗộớờởỡợụủứừửữựỳỵỷỹ",
        prompts=("Hãy cho tôi ba lời khuyên để giữ gìn sức khỏe.", "Tại sao bầu trời có màu xanh? Hãy giải thích ngắn gọn.",
                 "Viết một lời cảm ơn ngắn gửi người bạn đã giúp đỡ bạn."),
        expansion_scripts=("Latn",)),
    Language("ru", "Russian", "Cyrl", ("rus",), _words(
        "и в не на что он она они это как его её было был была были только уже если когда который которые также "
        "можно мы вы"), letters="ыэё",
        prompts=("Какие три совета ты бы дал, чтобы сохранить здоровье?",
                 "Почему небо голубое? Объясни это простыми словами.",
                 "Напиши короткую записку другу, который тебе помог, и поблагодари его."),
        expansion_scripts=("Cyrl",)),
    Language("uk", "Ukrainian", "Cyrl", ("ukr",), letters="іїєґ"),
    *_same_script("Cyrl", "be", "Belarusian", "bg", "Bulgarian", "sr", "Serbian", "mk", "Macedonian", "kk", "Kazakh",
                  "ky", "Kyrgyz", "mn", "Mongolian", "tg", "Tajik", "tt", "Tatar"),
    Language("ar", "Arabic", "Arab", ("ara",), _words(
        "في من على إلى أن هذا هذه التي الذي عن مع كان لا ما هو هي ذلك كل بين قد"), "يكةى",
        prompts=("أعطني ثلاث نصائح للحفاظ على الصحة.", "لماذا تكون السماء زرقاء؟ اشرح ذلك باختصار.",
                 "اكتب رسالة شكر قصيرة إلى صديق ساعدك."),
        expansion_scripts=("Arab",)),
    Language("fa", "Persian", "Arab", ("fas", "pes")),
    *_same_script("Arab", "ur", "Urdu", "ps", "Pashto", "ug", "Uyghur", "ckb", "Central Kurdish", "sd", "Sindhi"),
    Language("hi", "Hindi", "Deva", ("hin",), _words(
        "है हैं के का की में और से को पर यह वह एक भी नहीं तो ने था थे कि लिए हम तक हो रहा रहे गया जो कुछ अपने"),
        prompts=("स्वस्थ रहने के लिए तीन सुझाव दीजिए।", "आसमान नीला क्यों होता है? संक्षेप में समझाइए।",
                 "मदद करने वाले दोस्त के लिए एक छोटा धन्यवाद संदेश लिखिए।"),
        expansion_scripts=("Deva",)),
    *_same_script("Deva", "mr", "Marathi", "ne", "Nepali", "sa", "Sanskrit"),
    *_same_script("Ethi", "am", "Amharic", "ti", "Tigrinya"),
    Language("el", "Greek", "Grek", ("ell",)),
    Language("he", "Hebrew", "Hebr", ("heb",)),
    Language("th", "Thai", "Thai", ("tha",),
             prompts=("ช่วยแนะนำวิธีดูแลสุขภาพให้แข็งแรงสามข้อ", "ทำไมท้องฟ้าจึงเป็นสีฟ้า อธิบายสั้น ๆ",
                      "เขียนข้อความสั้น ๆ ขอบคุณเพื่อนที่ช่วยเหลือคุณ"),
             expansion_scripts=("Thai",)),
    Language("bn", "Bengali", "Beng", ("ben",)),
    Language("hy", "Armenian", "Armn"), Language("pa", "Punjabi", "Guru"), Language("gu", "Gujarati", "Gujr"),
    Language("or", "Odia", "Orya"), Language("ta", "Tamil", "Taml"), Language("te", "Telugu", "Telu"),
    Language("kn", "Kannada", "Knda"), Language("ml", "Malayalam", "Mlym"), Language("si", "Sinhala", "Sinh"),
    Language("lo", "Lao", "Laoo"), Language("bo", "Tibetan", "Tibt"), Language("my", "Burmese", "Mymr"),
    Language("ka", "Georgian", "Geor"), Language("km", "Khmer", "Khmr"),
)}
_BY_ALIAS = {alias: lang.code for lang in LANGUAGES.values() for alias in lang.aliases}


# ---- looking languages and scripts up -----------------------------------------------------------------------

def normalize_language(code: str) -> str:
    """``zh-Hans``, ``zh_CN``, ``zho_Hans``, ``ZH`` -> ``zh``: the language subtag, the table's code when known."""
    if not isinstance(code, str) or not code.strip():
        raise ChatflowError(f"not a language code: {code!r}")
    base = re.split(r"[-_]", code.strip().lower())[0]
    return _BY_ALIAS.get(base, base)


def find_language(code: str) -> Language | None:
    """The table's entry for a language code (any form :func:`normalize_language` takes), or None."""
    return LANGUAGES.get(normalize_language(code))


def get_language(code: str) -> Language:
    """The table's entry for a language code; a ChatflowError naming the known codes when it has none."""
    found = find_language(code)
    if found is None:
        raise ChatflowError(f"unknown language {code!r}; chatflow_plugin/languages.py knows "
                            f"{', '.join(sorted(LANGUAGES))}")
    return found


def one_language(tag: str | None) -> Language | None:
    """The language a mixture group's ``language`` tag names: ``zh``, ``zh-Hans``, ``ar-SA``, ``zho`` -> one
    table language; None for a tag of several languages (lowercase codes joined: the parallel group's
    ``en-zh``; the code group's ``multi``) or a language the table does not have."""
    if not isinstance(tag, str) or not tag.strip():
        return None
    first, *rest = re.split(r"[-_]", tag.strip())
    code = _BY_ALIAS.get(first.lower(), first.lower())
    if any(part.islower() and _BY_ALIAS.get(part, part) in LANGUAGES and _BY_ALIAS.get(part, part) != code
           for part in rest):
        return None                      # "en-zh": a pair; "ar-SA", "zh-Hans": a region or a script
    return LANGUAGES.get(code)


def languages_of(tag: str | None) -> tuple[str, ...]:
    """The table languages a mixture group's ``language`` tag names, in order: ``"ja"``, ``"ja-JP"`` -> ("ja",);
    ``"en-ja"`` -> ("en", "ja"); ``"multi"``, None, unknown codes -> ()."""
    one = one_language(tag)
    if one is not None:
        return (one.code,)
    if not isinstance(tag, str):
        return ()
    codes = [_BY_ALIAS.get(part.lower(), part.lower()) for part in re.split(r"[-_]", tag.strip())]
    return tuple(dict.fromkeys(code for code in codes if code in LANGUAGES))


def script_of_language(code: str) -> str:
    """ISO 15924 script a language is written in (Latin unless the table says otherwise)."""
    parts = re.split(r"[-_]", code.strip())
    for part in parts[1:]:   # an explicit script subtag wins: zho_Hans, sr-Latn, zh-Hant
        if len(part) == 4 and part.isalpha():
            return "Hani" if part.title() in ("Hans", "Hant") else part.title()
    found = find_language(code)
    return found.script if found else "Latn"


def get_script(name: str) -> Script:
    """A script by ISO 15924 code (any case) or alias (``cjk``, ``cjk_punct``, ``hiragana``, ...)."""
    for script in SCRIPTS.values():
        if name in (script.alias, script.code) or name.lower() == script.code.lower():
            return script
    raise ChatflowError(f"unknown script {name!r}; choose from {', '.join(script_names())}")


def script_names() -> list[str]:
    """What :func:`get_script` takes: the lowercase names (``cjk``, ``cjk_punct``, ...), then ISO 15924 codes."""
    names = [s.alias or s.code for s in SCRIPTS.values()]
    return sorted(names, key=lambda name: not name.islower())   # stable: table order within each kind


def in_scripts(names) -> Callable[[str], bool]:
    """A test of whether a character belongs to any of the named scripts (:func:`get_script` names)."""
    merged: list[list[int]] = []            # the union as disjoint ranges (cjk_punct overlaps katakana)
    scripts = [get_script(name) for name in names]
    scripts += [SCRIPTS[code] for script in scripts for code in script.parts]
    for lo, hi in sorted(r for script in scripts for r in script.ranges):
        if merged and lo <= merged[-1][1] + 1:
            merged[-1][1] = max(merged[-1][1], hi)
        else:
            merged.append([lo, hi])
    starts = [lo for lo, _ in merged]

    def contains(ch: str) -> bool:
        i = bisect.bisect_right(starts, ord(ch)) - 1
        return i >= 0 and ord(ch) <= merged[i][1]

    return contains


# ---- detection ------------------------------------------------------------------------------------------

_LETTER_RANGES = sorted((lo, hi, s.code) for s in SCRIPTS.values() if s.weight for lo, hi in s.ranges)
_LETTER_STARTS = [r[0] for r in _LETTER_RANGES]
assert all(a[1] < b[0] for a, b in zip(_LETTER_RANGES, _LETTER_RANGES[1:])), "letter scripts overlap"
assert all(lang.script in SCRIPTS for lang in LANGUAGES.values()), "a language's script is not in SCRIPTS"

_CODE_BLOCK = re.compile(r"```.*?(```|$)", re.S)
_URL = re.compile(r"https?://\S+|www\.\S+")


def _letter_script(ch: str) -> str | None:
    cp = ord(ch)
    i = bisect.bisect_right(_LETTER_STARTS, cp) - 1
    if i >= 0 and _LETTER_RANGES[i][0] <= cp <= _LETTER_RANGES[i][1]:
        return _LETTER_RANGES[i][2]
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


def _text_words(text: str) -> list[str]:
    """The lowercase words of a text: whitespace-separated, kept to letters and combining marks (Devanagari
    vowel signs, Arabic harakat and Thai marks are marks, not word breaks)."""
    words = []
    for chunk in text.lower().split():
        word = "".join(ch for ch in chunk if unicodedata.category(ch)[0] in "LM")
        if word:
            words.append(word)
    return words


def _scripts_language(script: str, text: str) -> str | None:
    """The language of a text in ``script``: the script's only detectable language, or the word/letter score."""
    candidates = [lang for lang in LANGUAGES.values() if lang.script == script and lang.detectable]
    if len(candidates) == 1:
        return candidates[0].code
    words = _text_words(text)
    if not words:
        return None
    lowered = text.lower()
    scores: Counter[str] = Counter()
    for lang in candidates:
        scores[lang.code] = sum(1 for w in words if w in lang.function_words)
        if lang.letters and any(ch in lowered for ch in lang.letters):
            scores[lang.code] += 2
    ranked = scores.most_common(2)
    if not ranked:
        return None
    best, best_score = ranked[0]
    runner_up = ranked[1][1] if len(ranked) > 1 else 0
    needed = 1 if len(words) <= 3 else 2
    if best_score >= needed and best_score >= 1.5 * runner_up and best_score > runner_up:
        return best
    return None


def detect_language(text: str) -> Detection:
    """Script and (where the rules of the module docstring allow) language of a text."""
    text = _URL.sub(" ", _CODE_BLOCK.sub(" ", text or ""))
    weights: Counter[str] = Counter()
    for ch in text:
        script = _letter_script(ch)
        if script is not None:
            weights[script] += SCRIPTS[script].weight
    kana = sum(weights.get(k, 0) for k in KANA)
    cjk = weights.get("Hani", 0) + kana
    merged = Counter({k: v for k, v in weights.items() if k != "Hani" and k not in KANA})
    if cjk:
        merged["Jpan" if kana / cjk >= KANA_SHARE_FOR_JAPANESE else "Hani"] = cjk
    if not merged or max(merged.values()) < 2:
        return Detection(UNDETERMINED, None, dict(weights))
    script = max(merged, key=merged.get)
    return Detection(script, _scripts_language(script, text), dict(weights))
