"""The synthetic world: invented countries, cities, rivers and people with fixed attributes.

Everything is drawn once from the seed, so every corpus file (English, Chinese, parallel,
instructions, code) states the same facts: a fact read in English text can be asked about in a
Chinese instruction. Also the number words both languages need.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field

import synth_lexicon as L

N_COUNTRIES = 12
CITIES_PER_COUNTRY = (3, 5)
N_RIVERS = 16
N_WESTERN_PEOPLE = 36          # every Western name once
N_CHINESE_PEOPLE = 44


@dataclass(frozen=True)
class Word:
    en: str
    zh: str


@dataclass
class Country:
    name: Word
    region: Word
    product: Word
    cities: list["City"] = field(default_factory=list)
    neighbours: list["Country"] = field(default_factory=list)

    @property
    def capital(self) -> "City":
        return self.cities[0]


@dataclass
class City:
    name: Word
    country: Country
    big: bool
    river: Word | None
    weather: Word
    population_thousands: int


@dataclass
class Person:
    name: Word
    gender: str                 # "m" or "f"
    age: int
    home: City
    birthplace: City
    job: Word
    food: Word
    colour: Word
    activity: tuple             # an entry of lexicon.ACTIVITIES
    pet: tuple | None           # an entry of lexicon.ANIMALS
    friend: "Person | None" = None

    @property
    def he(self) -> Word:
        return Word("he", "他") if self.gender == "m" else Word("she", "她")

    @property
    def his(self) -> Word:
        return Word("his", "他的") if self.gender == "m" else Word("her", "她的")

    @property
    def him(self) -> Word:
        return Word("him", "他") if self.gender == "m" else Word("her", "她")


@dataclass
class World:
    countries: list[Country]
    cities: list[City]
    rivers: list[Word]
    people: list[Person]


def _invent_names(rng: random.Random, count: int, min_syllables: int, max_syllables: int,
                  suffix: tuple[str, str] | None, taken: set[str]) -> list[Word]:
    """Pronounceable invented names with a syllable-by-syllable Chinese transliteration."""
    names = []
    while len(names) < count:
        parts = [rng.choice(L.PLACE_SYLLABLES) for _ in range(rng.randint(min_syllables, max_syllables))]
        if suffix is None and rng.random() < 0.5:
            parts[-1] = rng.choice(L.PLACE_CODAS)
        en = "".join(p[0] for p in parts)
        zh = "".join(p[1] for p in parts)
        if suffix is not None:                       # Sovesa + ia -> Sovesia, 索维萨 + 亚 -> 索维萨亚
            if parts[-1][0] == "ya":
                continue
            en, zh = en[:-1] + suffix[0], zh + suffix[1]
        en = en.capitalize()
        if en in taken or zh in taken:
            continue
        taken.update((en, zh))
        names.append(Word(en, zh))
    return names


def build_world(seed: int) -> World:
    rng = random.Random(f"{seed}/world")
    taken: set[str] = set()
    country_names = _invent_names(rng, N_COUNTRIES, 2, 3, L.COUNTRY_SUFFIX, taken)
    products = rng.sample(L.PRODUCTS, N_COUNTRIES)
    countries = [Country(name, Word(*rng.choice(L.REGIONS)), Word(*product))
                 for name, product in zip(country_names, products)]
    rivers = _invent_names(rng, N_RIVERS, 2, 2, None, taken)
    cities = []
    for country in countries:
        n = rng.randint(*CITIES_PER_COUNTRY)
        for i, name in enumerate(_invent_names(rng, n, 2, 3, None, taken)):
            big = i == 0 or rng.random() < 0.3      # capitals are big cities
            city = City(name, country, big, rng.choice(rivers) if rng.random() < 0.6 else None,
                        Word(*rng.choice(L.WEATHER)),
                        rng.randrange(300, 3000, 10) if big else rng.randrange(10, 300, 5))
            country.cities.append(city)
            cities.append(city)
    for i, country in enumerate(countries):          # a ring plus a few chords: symmetric borders
        for other in (countries[(i + 1) % N_COUNTRIES],) + ((rng.choice(countries),) if rng.random() < 0.3 else ()):
            if other is not country and other not in country.neighbours:
                country.neighbours.append(other)
                other.neighbours.append(country)

    people_names = [(Word(en, zh), g) for en, zh, g in L.WESTERN_NAMES[:N_WESTERN_PEOPLE]]
    seen = set()
    while len(people_names) < N_WESTERN_PEOPLE + N_CHINESE_PEOPLE:
        (s_en, s_zh), (g_en, g_zh, gender) = rng.choice(L.SURNAMES), rng.choice(L.GIVEN_NAMES)
        if (s_en, g_en) not in seen:
            seen.add((s_en, g_en))
            people_names.append((Word(f"{s_en} {g_en}", s_zh + g_zh), gender))
    rng.shuffle(people_names)
    animals = {a[0]: a for a in L.ANIMALS}
    people = []
    for name, gender in people_names:
        home = rng.choice(cities)
        people.append(Person(
            name=name, gender=gender, age=rng.randint(18, 80), home=home,
            birthplace=home if rng.random() < 0.4 else rng.choice(cities),
            job=Word(*rng.choice(L.JOBS)), food=Word(*rng.choice(L.FOODS)), colour=Word(*rng.choice(L.COLOURS)),
            activity=rng.choice(L.ACTIVITIES),
            pet=animals[rng.choice(L.PETS)] if rng.random() < 0.6 else None))
    for i, person in enumerate(people):              # friendship is mutual: pair neighbours in a shuffle
        if i % 2 == 1:
            person.friend, people[i - 1].friend = people[i - 1], person
    return World(countries, cities, rivers, people)


# ---- numbers in words -------------------------------------------------------------------------

_EN_ONES = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
            "fifteen sixteen seventeen eighteen nineteen").split()
_EN_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
_ZH_DIGITS = "零一二三四五六七八九"


def en_number(n: int) -> str:
    """English words for 0 <= n < 1,000,000 ("forty-two", "one hundred and five")."""
    if not 0 <= n < 1_000_000:
        raise ValueError(f"en_number: {n} out of range")
    if n < 20:
        return _EN_ONES[n]
    if n < 100:
        return _EN_TENS[n // 10] + ("-" + _EN_ONES[n % 10] if n % 10 else "")
    if n < 1000:
        rest = n % 100
        return _EN_ONES[n // 100] + " hundred" + (" and " + en_number(rest) if rest else "")
    rest = n % 1000
    head = en_number(n // 1000) + " thousand"
    if not rest:
        return head
    return head + (" and " if rest < 100 else " ") + en_number(rest)


def _zh_below_10000(n: int, leading: bool) -> str:
    out, zero_pending = [], False
    for value, unit in ((1000, "千"), (100, "百"), (10, "十"), (1, "")):
        digit = n // value % 10
        if digit == 0:
            zero_pending = bool(out)
            continue
        if zero_pending:
            out.append("零")
            zero_pending = False
        if value == 10 and digit == 1 and leading and not out:
            out.append("十")                          # 十二, not 一十二, at the start of a number
        else:
            out.append(_ZH_DIGITS[digit] + unit)
    return "".join(out)


def zh_number(n: int) -> str:
    """Chinese numerals for 0 <= n < 100,000,000 (十二, 一百零五, 三万零二十)."""
    if not 0 <= n < 100_000_000:
        raise ValueError(f"zh_number: {n} out of range")
    if n == 0:
        return "零"
    wan, rest = divmod(n, 10_000)
    if not wan:
        return _zh_below_10000(rest, leading=True)
    head = _zh_below_10000(wan, leading=True) + "万"
    if not rest:
        return head
    return head + ("零" if rest < 1000 else "") + _zh_below_10000(rest, leading=False)


def zh_count(n: int) -> str:
    """A number before a measure word: 两 for 2 (两个苹果), numerals otherwise."""
    return "两" if n == 2 else zh_number(n)


def en_article(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" else "a"


def en_join(items: list[str]) -> str:
    """'A', 'A and B', 'A, B and C'."""
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def zh_join(items: list[str]) -> str:
    """'甲', '甲和乙', '甲、乙和丙'."""
    return items[0] if len(items) == 1 else "、".join(items[:-1]) + "和" + items[-1]
