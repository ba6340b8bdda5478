"""Multiple-choice questions about the synthetic world: one fact asked, one true answer, three false ones.

A *kind* asks one sort of fact (the capital of a country, a person's job, a sum, the Chinese for an
English word ...). Drawing a kind gives the fields its templates need, the true value and every
false value the world offers, each in English and Chinese; ``draw`` then samples three distractors
that differ from the answer and from each other in both languages. Distractors come from the
world itself (other cities, other people's ages, other countries' products), so they are plausible
and, by construction, false.

Each kind has up to three templates: an English question (MMLU), a Chinese question (CMMLU) and
a Chinese *statement* with ``{v}`` where the value goes. The statement is the question in C-Eval's
cloze form (``{v}`` -> ``____``) and GAOKAO's (``{v}`` -> ``（　　）``), the explanation of a dev
exemplar (with the true value), and the false statements of GAOKAO's multiple-answer questions
(with a false value). The facts asked are the ones the corpora state (``synth_sentences``), so a
model trained on the corpora could answer them.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Callable, Sequence

import synth_lexicon as L
from synth_world import World, Word, en_article, en_number, zh_count, zh_number

BLANK = {"cloze": "____", "exam": "（　　）"}   # C-Eval's and GAOKAO's blank
STYLES = ("en", "zh", "cloze", "exam")


@dataclass(frozen=True)
class Kind:
    name: str
    en: str | None                # English question ({x}: the subject's English field)
    zh: str | None                # Chinese question
    statement: str                # Chinese statement; {v} is the value
    entities: Callable[[World], Sequence]        # what the question can be about (a one-item tuple for drawn numbers)
    values: Callable[[random.Random, World, object], tuple[dict[str, Word], Word, list[Word]]]
    # -> (template fields, the true value, the false values)


@dataclass(frozen=True)
class Drawn:
    kind: Kind
    fields: dict[str, Word]
    answer: Word
    distractors: tuple[Word, Word, Word]

    def stem(self, style: str) -> str:
        """The question in one of STYLES."""
        lang = "en" if style == "en" else "zh"
        fields = {k: getattr(w, lang) for k, w in self.fields.items()}
        if style in ("en", "zh"):
            template = getattr(self.kind, style)
            if template is None:
                raise ValueError(f"kind {self.kind.name!r} has no {style} question")
            return template.format(**fields)
        return self.kind.statement.format(v=BLANK[style], **fields)

    def options(self, style: str) -> list[str]:
        """The answer first, then the distractors, in the stem's language."""
        lang = "en" if style == "en" else "zh"
        return [getattr(w, lang) for w in (self.answer, *self.distractors)]

    def statement(self, value: Word) -> str:
        """The Chinese statement with ``value`` filled in (true for the answer, false for a distractor)."""
        return self.kind.statement.format(v=value.zh, **{k: w.zh for k, w in self.fields.items()})

    @property
    def fact(self) -> str:
        return self.statement(self.answer)


# English words whose meanings overlap: one is never a distractor for the other (a parrot is a bird).
CLOSE_MEANINGS = {frozenset(p) for p in (("bird", "parrot"), ("bird", "duck"), ("singer", "musician"),
                                         ("hot", "warm"), ("warm", "mild"), ("cold", "snowy"))}


def too_close(a: Word, b: Word) -> bool:
    def core(w: Word) -> str:
        return w.en.removeprefix("a ").removeprefix("an ")
    return frozenset((core(a), core(b))) in CLOSE_MEANINGS


class Exhausted(Exception):
    """The false values left cannot make three distinct distractors."""


def draw(rng: random.Random, world: World, kind: Kind, entity=None) -> Drawn:
    """One question of ``kind`` about ``entity`` (a random one when None)."""
    if entity is None:
        entity = rng.choice(kind.entities(world))
    fields, answer, false = kind.values(rng, world, entity)
    false = list(false)
    rng.shuffle(false)
    chosen: list[Word] = []
    for w in false:                       # distinct from the answer and each other in both languages
        if all(w.en != o.en and w.zh != o.zh for o in (answer, *chosen)) and not too_close(w, answer):
            chosen.append(w)
            if len(chosen) == 3:
                return Drawn(kind, fields, answer, tuple(chosen))
    raise Exhausted(f"{kind.name}: fewer than three distinct false values for {answer}")


# ---- the world's facts --------------------------------------------------------------------------

def _river(word: Word) -> Word:
    return Word(f"the {word.en} River", f"{word.zh}河")


def _others(pool, exclude) -> list:
    return [x for x in pool if x not in exclude]


def _country_values(attr: Callable):
    """Values of a country attribute: the true one and the other countries' (products, capitals)."""
    def values(rng, world, k):
        return {"x": k.name}, attr(k), [attr(o) for o in world.countries if o is not k]
    return values


def _capital(rng, world, k):
    return {"x": k.name}, k.capital.name, [c.name for c in world.cities if c is not k.capital]


def _region(rng, world, k):
    regions = [Word(f"the {en}", zh) for en, zh in L.REGIONS]
    answer = Word(f"the {k.region.en}", k.region.zh)
    return {"x": k.name}, answer, _others(regions, (answer,))


def _neighbour(rng, world, k):
    return ({"x": k.name}, rng.choice(k.neighbours).name,
            [o.name for o in world.countries if o is not k and o not in k.neighbours])


def _country_of(rng, world, c):
    return {"x": c.name}, c.country.name, [k.name for k in world.countries if k is not c.country]


def _river_of(rng, world, c):
    return {"x": c.name}, _river(c.river), [_river(r) for r in world.rivers if r != c.river]


def _weather(rng, world, c):
    return {"x": c.name}, c.weather, _others([Word(*w) for w in L.WEATHER], (c.weather,))


def _resident(rng, world, c):
    residents = [p for p in world.people if p.home is c]
    return {"x": c.name}, rng.choice(residents).name, [p.name for p in world.people if p.home is not c]


def _person_values(attr: Callable):
    """A person's attribute: the true value and the values other people have (other jobs, other ages)."""
    def values(rng, world, p):
        answer = attr(p)
        false = sorted({attr(q) for q in world.people} - {answer}, key=lambda w: (w.en, w.zh))
        return {"x": p.name}, answer, false
    return values


def _city_of_person(attr: Callable):
    def values(rng, world, p):
        return {"x": p.name}, attr(p).name, [c.name for c in world.cities if c is not attr(p)]
    return values


def _friend(rng, world, p):
    return {"x": p.name}, p.friend.name, [q.name for q in world.people if q is not p and q is not p.friend]


def _pet_word(animal: tuple) -> Word:
    sing, _, zh, classifier = animal
    return Word(f"{en_article(sing)} {sing}", f"一{classifier}{zh}")


def _pet(rng, world, p):
    pets = [a for a in L.ANIMALS if a[0] in L.PETS]
    return {"x": p.name}, _pet_word(p.pet), [_pet_word(a) for a in pets if a != p.pet]


# ---- arithmetic and numbers -----------------------------------------------------------------------

def _near(value: int, candidates: list[int]) -> list[Word]:
    """Wrong numbers a careless solver might give: off by one or ten, or another operation's result."""
    wrong = sorted({n for n in candidates if n >= 0 and n != value})
    return [Word(str(n), str(n)) for n in wrong]


def _arithmetic(rng, world, _):
    op = rng.choice(("plus", "minus", "times"))
    if op == "times":
        a, b = rng.randint(2, 12), rng.randint(2, 12)
        value, slips = a * b, [a * (b + 1), a * (b - 1), (a + 1) * b, (a - 1) * b, a + b, a * b + 10]
    else:
        a, b = rng.randint(2, 60), rng.randint(2, 60)
        if op == "minus" and b > a:
            a, b = b, a
        value = a + b if op == "plus" else a - b
        slips = [value + 1, value - 1, value + 10, value - 10, a - b if op == "plus" else a + b]
    zh_op = {"plus": "加", "minus": "减", "times": "乘以"}[op]
    return {"x": Word(f"{a} {op} {b}", f"{a}{zh_op}{b}")}, Word(str(value), str(value)), _near(value, slips)


def _things(n: int, thing: tuple) -> Word:
    sing, plural, zh, cl = thing
    return Word(f"{en_number(n)} {sing if n == 1 else plural}", f"{zh_count(n)}{cl}{zh}")


def _word_problem(rng, world, _):
    """A counting story in the corpus's own words; the answer is how many things someone has now."""
    p, q = rng.sample(world.people, 2)
    thing = rng.choice(L.THINGS[:50])
    a = rng.randint(2, 20)
    if rng.random() < 0.5:
        b = rng.randint(1, 20)
        value, other = a + b, a - b
        second = Word(f"{q.name.en} gives {p.him.en} {_things(b, thing).en}.",
                      f"{q.name.zh}给了{p.him.zh}{_things(b, thing).zh}。")
    else:
        b = rng.randint(1, a)
        value, other = a - b, a + b
        second = Word(f"{p.he.en.capitalize()} gives {_things(b, thing).en} to {q.name.en}.",
                      f"{p.he.zh}给了{q.name.zh}{_things(b, thing).zh}。")
    story = Word(f"{p.name.en} has {_things(a, thing).en}. {second.en}", f"{p.name.zh}有{_things(a, thing).zh}。{second.zh}")
    slips = {value + 1, value - 1, value + 2, value - 2, a, b, other}
    false = [_things(n, thing) for n in sorted(slips) if n >= 0 and n != value]
    fields = {"story": story, "p": p.name, "things": Word(thing[1], thing[3] + thing[2])}
    return fields, _things(value, thing), false


def _number_words(rng, world, _):
    n = rng.randint(11, 999) if rng.random() < 0.7 else rng.randint(1000, 99999)
    digits = str(n)
    slips = {n + 1, n - 1, n + 10, n - 10, n * 10, n // 10, int(digits[::-1]), int(digits[1:] + digits[0])}
    if n >= 100:
        slips |= {n + 100, n - 100}
    false = [Word(en_number(m), zh_number(m)) for m in sorted(slips) if 0 < m < 1_000_000 and m != n]
    return {"x": Word(digits, digits)}, Word(en_number(n), zh_number(n)), false


# ---- words and names ------------------------------------------------------------------------------

# Lexicon categories for vocabulary questions: (English, Chinese) pairs; options come from one category.
VOCABULARY = {
    "thing": [(t[0], t[2]) for t in L.THINGS],
    "animal": [(a[0], a[2]) for a in L.ANIMALS],
    "job": list(L.JOBS),
    "colour": list(L.COLOURS),
    "food": list(L.FOODS),
    "activity": [(a[0], a[4]) for a in L.ACTIVITIES],
}


def _all_translations() -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """Every Chinese word an English word translates to anywhere in the lexicon, and the reverse."""
    to_zh: dict[str, set[str]] = {}
    to_en: dict[str, set[str]] = {}
    for pairs in VOCABULARY.values():
        for en, zh in pairs:
            to_zh.setdefault(en, set()).add(zh)
            to_en.setdefault(zh, set()).add(en)
    return to_zh, to_en


TO_ZH, TO_EN = _all_translations()


def _vocabulary_entries(world) -> list[tuple[str, str, str]]:
    return [(category, en, zh) for category, pairs in VOCABULARY.items() for en, zh in pairs]


def _option(text: str) -> Word:
    """An option of a Chinese-only question, whatever its language (the same text in both fields)."""
    return Word(text, text)


def _word_to_zh(rng, world, entry):
    category, en, zh = entry
    false = [_option(z) for _, z in VOCABULARY[category] if z not in TO_ZH[en]]
    return {"x": _option(en)}, _option(zh), false


def _word_to_en(rng, world, entry):
    category, en, zh = entry
    false = [_option(e) for e, _ in VOCABULARY[category] if e not in TO_EN[zh]]
    return {"x": _option(zh)}, _option(en), false


def _places(world) -> list[tuple[str, Word]]:
    return ([("country", k.name) for k in world.countries] + [("city", c.name) for c in world.cities]
            + [("river", r) for r in world.rivers])


def _name_to_zh(rng, world, entry):
    kind, name = entry
    return {"x": _option(name.en)}, _option(name.zh), [_option(n.zh) for k, n in _places(world) if k == kind and n != name]


def _name_to_en(rng, world, entry):
    kind, name = entry
    return {"x": _option(name.zh)}, _option(name.en), [_option(n.en) for k, n in _places(world) if k == kind and n != name]


# ---- the kinds ----------------------------------------------------------------------------------------

def _countries(world):
    return world.countries


def _cities(world):
    return world.cities


def _people(world):
    return world.people


def _no_entity(world):
    return (None,)


KINDS = {k.name: k for k in (
    # geography
    Kind("capital", "What is the capital of {x}?", "{x}的首都是哪座城市？", "{x}的首都是{v}。", _countries, _capital),
    Kind("country_of_city", "Which country is {x} in?", "{x}在哪个国家？", "{x}是{v}的一座城市。", _cities, _country_of),
    Kind("river", "Which river flows through {x}?", "哪条河流经{x}？", "{v}流经{x}。",
         lambda w: [c for c in w.cities if c.river is not None], _river_of),
    Kind("product", "What is {x} famous for?", "{x}以什么闻名？", "{x}以{v}闻名。", _countries,
         _country_values(lambda k: k.product)),
    Kind("region", "In which part of the continent is {x}?", "{x}位于大陆的哪个部分？", "{x}位于大陆的{v}。",
         _countries, _region),
    Kind("neighbour", "Which of these countries borders {x}?", "下列国家中，哪个与{x}接壤？", "{x}与{v}接壤。",
         _countries, _neighbour),
    Kind("weather", "What is the weather usually like in {x}?", "{x}的天气通常怎么样？", "{x}的天气通常{v}。",
         _cities, _weather),
    Kind("resident", "Which of these people lives in {x}?", "下列人物中，谁住在{x}？", "{v}住在{x}。",
         lambda w: [c for c in w.cities if any(p.home is c for p in w.people)], _resident),
    # people
    Kind("job", "What is {x}'s job?", "{x}的工作是什么？", "{x}是一名{v}。", _people, _person_values(lambda p: p.job)),
    Kind("home", "Where does {x} live?", "{x}住在哪座城市？", "{x}住在{v}。", _people, _city_of_person(lambda p: p.home)),
    Kind("age", "How old is {x}?", "{x}今年多少岁？", "{x}今年{v}岁。", _people,
         _person_values(lambda p: Word(str(p.age), str(p.age)))),
    Kind("birthplace", "Where was {x} born?", "{x}出生在哪座城市？", "{x}出生在{v}。", _people,
         _city_of_person(lambda p: p.birthplace)),
    Kind("food", "What is {x}'s favourite food?", "{x}最喜欢的食物是什么？", "{x}最喜欢的食物是{v}。", _people,
         _person_values(lambda p: p.food)),
    Kind("colour", "What is {x}'s favourite colour?", "{x}最喜欢什么颜色？", "{x}最喜欢的颜色是{v}。", _people,
         _person_values(lambda p: p.colour)),
    Kind("activity", "What does {x} like to do?", "{x}喜欢做什么？", "{x}喜欢{v}。", _people,
         _person_values(lambda p: Word(p.activity[0], p.activity[4]))),
    Kind("friend", "Who is {x}'s best friend?", "{x}最好的朋友是谁？", "{x}最好的朋友是{v}。",
         lambda w: [p for p in w.people if p.friend is not None], _friend),
    Kind("pet", "What pet does {x} have?", "{x}养了什么宠物？", "{x}养了{v}。",
         lambda w: [p for p in w.people if p.pet is not None], _pet),
    # arithmetic and numbers
    Kind("arithmetic", "What is {x}?", "{x}等于多少？", "{x}等于{v}。", _no_entity, _arithmetic),
    Kind("word_problem", "{story} How many {things} does {p} have now?", "{story}{p}现在有几{things}？",
         "{story}现在{p}有{v}。", _no_entity, _word_problem),
    Kind("number_words", "How is the number {x} written in words?", "数字{x}用汉字怎么写？", "数字{x}写作{v}。",
         _no_entity, _number_words),
    # vocabulary (Chinese benchmarks only)
    Kind("word_to_zh", None, "英文单词“{x}”的中文是什么？", "英文单词“{x}”的中文是{v}。", _vocabulary_entries, _word_to_zh),
    Kind("word_to_en", None, "“{x}”用英文怎么说？", "“{x}”的英文是{v}。", _vocabulary_entries, _word_to_en),
    Kind("name_to_zh", None, "{x}的中文名称是什么？", "{x}的中文名称是{v}。", _places, _name_to_zh),
    Kind("name_to_en", None, "{x}的英文名称是什么？", "{x}的英文名称是{v}。", _places, _name_to_en),
)}

GEOGRAPHY = ("capital", "country_of_city", "river", "product", "region", "neighbour", "weather", "resident")
PEOPLE = ("job", "home", "age", "birthplace", "food", "colour", "activity", "friend", "pet")
MATHEMATICS = ("arithmetic", "word_problem", "number_words")
VOCABULARY_KINDS = ("word_to_zh", "word_to_en", "name_to_zh", "name_to_en")

# The kinds that can be asked about one country or one person (GAOKAO's statements and reading passages).
COUNTRY_KINDS = ("capital", "product", "region", "neighbour")
PERSON_KINDS = PEOPLE
