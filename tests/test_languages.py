"""The language and script tables, lookups, character sets for vocabulary mining, and language detection."""
from __future__ import annotations

import pytest

from chatflow_plugin import languages
from chatflow_plugin.errors import ChatflowError
from chatflow_plugin.languages import (LANGUAGES, SCRIPTS, UNDETERMINED, Language, detect_language, get_language,
                                       get_script, in_scripts, normalize_language, one_language, script_names,
                                       script_of_language)


def test_the_tables_are_consistent():
    for code, lang in LANGUAGES.items():
        assert code == lang.code and lang.name and lang.script in SCRIPTS
        assert all(get_script(name) for name in lang.expansion_scripts)
        assert lang.letters == lang.letters.lower()
    aliases = [a for lang in LANGUAGES.values() for a in lang.aliases]
    assert len(aliases) == len(set(aliases)) and not set(aliases) & set(LANGUAGES)
    names = script_names()
    assert names[:5] == ["cjk", "cjk_punct", "hiragana", "katakana", "hangul"] and "Thai" in names
    for lang in ("en", "zh"):                                     # what the demo needs of its two languages
        assert LANGUAGES[lang].prompt
    assert LANGUAGES["zh"].expansion_scripts == ("cjk", "cjk_punct")


def test_lookups():
    assert get_language("zho_Hans").name == "Chinese" and get_language("EN").code == "en"
    with pytest.raises(ChatflowError, match="unknown language 'xx'.*knows .*en"):
        get_language("xx")
    # a mixture group's tag: one language (with region or script) or several
    assert [one_language(t).code for t in ("en", "zh-Hans", "zh_CN", "zho", "pt-BR", "ar-SA", "pt-pt")] == \
        ["en", "zh", "zh", "zh", "pt", "ar", "pt"]
    assert [one_language(t) for t in ("en-zh", "zh_en", "eng-zho", "multi", "", None, "xx")] == [None] * 7


def test_scripts_for_vocabulary_mining():
    assert get_script("cjk") is get_script("Hani") is get_script("hani") is SCRIPTS["Hani"]
    with pytest.raises(ChatflowError, match="unknown script 'klingon'; choose from cjk, cjk_punct"):
        get_script("klingon")
    han = in_scripts(["cjk"])
    assert han("中") and han("\U00020000") and han("\U00030000") and not han("，") and not han("a")
    mixed = in_scripts(["cjk_punct", "katakana"])       # overlapping sets: full-width forms hold half-width kana
    assert mixed("，") and mixed("ｶ") and mixed("カ") and mixed("\uffe5") and not mixed("中")
    japanese = in_scripts(["Jpan"])                      # a script written with others: its parts
    assert japanese("中") and japanese("あ") and japanese("カ") and not japanese("한")


def test_a_language_is_one_entry(monkeypatch):
    """A new Latin-script language takes part in detection from its entry alone."""
    text = "Mi vidas la hundon kaj la katon, kiuj estas ankaŭ en la ĝardeno."
    assert detect_language(text).language is None
    monkeypatch.setitem(LANGUAGES, "eo", Language("eo", "Esperanto", "Latn",
                                                  function_words=languages._words("kaj estas la en de mi kiuj"),
                                                  letters="ĉĝĥĵŝŭ"))
    assert detect_language(text).language == "eo" and get_language("eo").name == "Esperanto"
    assert one_language("eo").name == "Esperanto"


@pytest.mark.parametrize("text, language, script", [
    ("这是一个关于机器学习的问题。", "zh", "Hani"),
    ("这是Python的一个function", "zh", "Hani"),                       # CJK weight beats Latin letters
    ("東京は日本の首都です。", "ja", "Jpan"),
    ("서울은 한국의 수도입니다.", "ko", "Hang"),
    ("Москва — столица России, и мы были там.", "ru", "Cyrl"),
    ("Київ є столицею України.", "uk", "Cyrl"),
    ("Αθήνα είναι η πρωτεύουσα της Ελλάδας.", "el", "Grek"),
    ("กรุงเทพเป็นเมืองหลวงของประเทศไทย", "th", "Thai"),
    ("The capital of France is Paris, and it is a large city.", "en", "Latn"),
    ("Die Hauptstadt von Deutschland ist Berlin und sie ist groß.", "de", "Latn"),
    ("La capitale de la France est Paris et elle est très belle.", "fr", "Latn"),
    ("La capital de España es Madrid y es una ciudad muy grande.", "es", "Latn"),
    ("Thủ đô của Việt Nam là Hà Nội và đó là một thành phố lớn.", "vi", "Latn"),
])
def test_detect_language(text, language, script):
    found = detect_language(text)
    assert (found.language, found.script) == (language, script)
    assert found.matches(language)


def test_detect_language_edge_cases():
    for text in ("", "   ", "12345 !!", "```\nprint('hi')\n```", "https://example.com/a/b"):
        found = detect_language(text)
        assert found.script == UNDETERMINED and not found.determined and not found.matches("en")
    xyz = detect_language("Xyzzy plugh qwerty")         # Latin letters, no known function words
    assert xyz.script == "Latn" and xyz.language is None
    assert xyz.matches("en") and xyz.matches("de") and not xyz.matches("zh")   # script-level only
    russian_or_other = detect_language("Привет мир")    # no ru/uk-only letters: script level
    assert russian_or_other.language is None and russian_or_other.matches("ru") and russian_or_other.matches("bg")
    assert detect_language("Москва большая").matches("ru") is True
    assert detect_language("Москва большая и ты").matches("uk") is False   # ы: Russian, not Ukrainian


def test_language_codes():
    assert [normalize_language(c) for c in ("zh-Hans", "zh_CN", "zho_Hans", "EN", "eng_Latn")] == ["zh", "zh", "zh", "en", "en"]
    assert script_of_language("zh-CN") == "Hani" and script_of_language("zho_Hans") == "Hani"
    assert script_of_language("sr-Latn") == "Latn" and script_of_language("ru") == "Cyrl"
    assert script_of_language("de") == "Latn" and script_of_language("ar") == "Arab"
    with pytest.raises(ChatflowError, match="not a language code"):
        normalize_language("")


# The shipped target languages, each with short real sentences (two per language, not the default prompts).
SHIPPED = {
    "en": ["The library opens at nine and closes at six on weekdays.", "We walked along the river until it got dark."],
    "zh": ["图书馆工作日早上九点开门，晚上六点关门。", "我们沿着河边一直走到天黑。"],
    "ja": ["図書館は平日の朝九時に開いて、夕方六時に閉まります。", "私たちは暗くなるまで川沿いを歩きました。"],
    "ko": ["도서관은 평일 아침 아홉 시에 문을 열고 저녁 여섯 시에 닫습니다.", "우리는 어두워질 때까지 강을 따라 걸었습니다."],
    "vi": ["Thư viện mở cửa lúc chín giờ sáng và đóng cửa lúc sáu giờ chiều.",
           "Chúng tôi đi bộ dọc theo bờ sông cho đến khi trời tối."],
    "th": ["ห้องสมุดเปิดเวลาเก้าโมงเช้าและปิดเวลาหกโมงเย็นในวันธรรมดา", "เราเดินเล่นริมแม่น้ำจนกระทั่งมืด"],
    "hi": ["पुस्तकालय सप्ताह के दिनों में सुबह नौ बजे खुलता है और शाम छह बजे बंद होता है।",
           "हम अंधेरा होने तक नदी के किनारे चलते रहे।"],
    "ar": ["تفتح المكتبة في الساعة التاسعة صباحا وتغلق في السادسة مساء في أيام الأسبوع.",
           "مشينا على طول النهر حتى حل الظلام."],
    "ru": ["Библиотека открывается в девять утра и закрывается в шесть вечера по будням.",
           "Мы гуляли вдоль реки, пока не стемнело."],
}


@pytest.mark.parametrize("code", sorted(SHIPPED))
def test_each_shipped_language_detects_prompts_and_mines_its_scripts(code):
    """Every shipped language: its sentences and its default prompts are detected as it; the scripts mined for it
    hold every letter of them; its mixture tags resolve to it; its benchmarks are the registry's records of it."""
    from chatflow_plugin.evaluation.registry import BENCHMARKS, benchmarks_of_language
    from chatflow_plugin.languages import languages_of

    language = get_language(code)
    assert len(language.prompts) >= 3 and language.prompt == language.prompts[0]
    for text in SHIPPED[code] + list(language.prompts):
        found = detect_language(text)
        assert (found.language, found.script) == (code, language.script), text
    if code != "en":                              # English is the source language: nothing to mine
        mined = in_scripts(language.expansion_scripts)
        letters = {ch for text in SHIPPED[code] for ch in text if ch.isalpha()}
        assert letters and all(mined(ch) for ch in letters), [ch for ch in letters if not mined(ch)]
        assert languages_of(f"en-{code}") == ("en", code)
    assert languages_of(code) == languages_of(f"{code}-XX") == (code,) and one_language(code) is language
    assert benchmarks_of_language(code) == [n for n, s in BENCHMARKS.items() if s.language == code]
    assert benchmarks_of_language("zh") == ["ceval", "cmmlu", "gaokao"] and benchmarks_of_language("en") == ["mmlu"]


def test_close_relatives_are_not_taken_for_the_shipped_languages():
    """Russian words and letters do not make Ukrainian Russian; Persian (its own letters) is not Arabic; a Marathi
    sentence has no Hindi function words."""
    assert detect_language("Я живу в Києві і працюю вчителем у школі.").language == "uk"
    assert detect_language("من هر روز به کتابخانه می روم و کتاب می خوانم.").language != "ar"
    assert detect_language("मी रोज सकाळी शाळेत जातो आणि अभ्यास करतो.").language != "hi"


def test_parallel_fields_follow_the_group_language(tmp_path):
    from chatflow_plugin.data.mixture import parse_mixture

    def source(language, **extra):
        return {"name": "g", "alpha": 1, "beta": 1, "language": language,
                "sources": [{"name": "p", "kind": "parallel", "paths": ["p.jsonl"], **extra}]}

    fields = [parse_mixture({"T_grow": 1, "groups": [g]}).groups[0].sources[0].fields
              for g in (source("en-ja"), source("ko-en"), source("multi"), source("en-ja", fields=["src", "tgt"]))]
    assert fields == [("en", "ja"), ("ko", "en"), ("en", "zh"), ("src", "tgt")]
