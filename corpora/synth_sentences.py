"""Sentence templates with aligned English and Chinese realisations, and documents made of them.

Every function returns ``Pair``s: the same meaning in both languages, built from the same draws,
so English text, Chinese text and parallel pairs share structure. Chinese follows its own word
order (time / subject / 在 place / verb / object; measure words; 了 for completed events).
"""
from __future__ import annotations

import random
from dataclasses import dataclass

import synth_lexicon as L
from synth_world import (City, Country, Person, World, Word, en_article, en_join, en_number, zh_count, zh_join,
                   zh_number)


@dataclass(frozen=True)
class Pair:
    en: str
    zh: str


def cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def _place(en_phrase: str) -> tuple:
    return next(p for p in L.PLACES if p[0] == en_phrase)


def zh_num(rng: random.Random, n: int, digits_share: float = 0.3) -> str:
    """Chinese text mixes Arabic digits and numerals; the model sees both for the same number."""
    return str(n) if rng.random() < digits_share else zh_number(n)


def subject(rng: random.Random, person: Person, pronoun: bool) -> tuple[Word, Word]:
    """(subject, possessive) as a name or a pronoun."""
    if pronoun:
        return person.he, Word(person.his.en, person.he.zh)
    # Chinese drops 的 before 最喜欢 / 最好的 (他最喜欢的颜色), so the possessive is the bare subject there.
    return person.name, Word(person.name.en + "'s", person.name.zh)


# ---- facts about people -----------------------------------------------------------------------

def person_facts(rng: random.Random, world: World, p: Person, pronouns: bool = True) -> list[Pair]:
    """True statements about ``p``; the first names the person, later ones may use he/she."""
    facts = []

    def add(make):
        s, poss = subject(rng, p, pronouns and bool(facts) and rng.random() < 0.7)
        facts.append(make(s, poss))

    job = p.job
    variants = [
        lambda s, poss: Pair(f"{cap(s.en)} is {en_article(job.en)} {job.en}.", f"{s.zh}是一名{job.zh}。"),
        lambda s, poss: Pair(f"{cap(s.en)} works as {en_article(job.en)} {job.en}.", f"{s.zh}的工作是{job.zh}。"),
    ]
    add(rng.choice(variants))
    home, country = p.home.name, p.home.country.name
    add(rng.choice([
        lambda s, poss: Pair(f"{cap(s.en)} lives in {home.en}.", f"{s.zh}住在{home.zh}。"),
        lambda s, poss: Pair(f"{cap(s.en)} lives in {home.en}, a city in {country.en}.",
                             f"{s.zh}住在{country.zh}的{home.zh}。"),
    ]))
    facts_rest = [
        lambda s, poss: Pair(f"{cap(s.en)} is {p.age} years old.", f"{s.zh}今年{zh_num(rng, p.age)}岁。"),
        lambda s, poss: Pair(f"{cap(s.en)} was born in {p.birthplace.name.en}.", f"{s.zh}出生在{p.birthplace.name.zh}。"),
        rng.choice([
            lambda s, poss: Pair(f"{cap(s.en)} likes to eat {p.food.en}.", f"{s.zh}喜欢吃{p.food.zh}。"),
            lambda s, poss: Pair(f"{cap(poss.en)} favourite food is {p.food.en}.", f"{poss.zh}最喜欢的食物是{p.food.zh}。"),
        ]),
        lambda s, poss: Pair(f"{cap(poss.en)} favourite colour is {p.colour.en}.", f"{poss.zh}最喜欢的颜色是{p.colour.zh}。"),
        lambda s, poss: Pair(f"{cap(s.en)} likes to {p.activity[0]}.", f"{s.zh}喜欢{p.activity[4]}。"),
        lambda s, poss: habit(rng, s, p.activity),
    ]
    if p.pet is not None:
        sing, _, zh, cl = p.pet
        facts_rest.append(rng.choice([
            lambda s, poss: Pair(f"{cap(s.en)} has {en_article(sing)} {sing}.", f"{s.zh}有一{cl}{zh}。"),
            lambda s, poss: Pair(f"{cap(s.en)} keeps {en_article(sing)} {sing} as a pet.", f"{s.zh}养了一{cl}{zh}。"),
        ]))
    if p.friend is not None:
        q = p.friend.name
        facts_rest.append(rng.choice([
            lambda s, poss: Pair(f"{cap(s.en)} and {q.en} are friends.", f"{s.zh}和{q.zh}是朋友。"),
            lambda s, poss: Pair(f"{cap(poss.en)} best friend is {q.en}.", f"{poss.zh}最好的朋友是{q.zh}。"),
        ]))
    rng.shuffle(facts_rest)
    for make in facts_rest[:rng.randint(3, len(facts_rest))]:
        add(make)
    return facts


def habit(rng: random.Random, s: Word, activity: tuple) -> Pair:
    base, third, _, _, zh = activity
    place = _place(rng.choice(L.ACTIVITY_PLACES[base]))
    if rng.random() < 0.5:
        when_en, when_zh = rng.choice(L.HABITS)
        return Pair(f"{when_en}, {s.en} {third} {place[0]}.", f"{when_zh}，{s.zh}在{place[2]}{zh}。")
    freq_en, freq_zh = rng.choice(L.FREQUENCIES)
    return Pair(f"{cap(s.en)} {freq_en} {third} {place[0]}.", f"{s.zh}{freq_zh}在{place[2]}{zh}。")


# ---- facts about places -----------------------------------------------------------------------

def city_facts(rng: random.Random, world: World, c: City) -> list[Pair]:
    n, k = c.name, c.country.name
    facts = [rng.choice([
        Pair(f"{n.en} is a city in {k.en}.", f"{n.zh}是{k.zh}的一座城市。"),
        Pair(f"{n.en} is in {k.en}.", f"{n.zh}在{k.zh}。"),
    ])]
    rest = []
    if c is c.country.capital:
        rest.append(Pair(f"{n.en} is the capital of {k.en}.", f"{n.zh}是{k.zh}的首都。"))
    rest.append(Pair(f"{n.en} is a {'big' if c.big else 'small'} city.", f"{n.zh}是一座{'大' if c.big else '小'}城市。"))
    if c.river is not None:
        r = c.river
        rest.append(rng.choice([
            Pair(f"{n.en} lies on the {r.en} River.", f"{n.zh}位于{r.zh}河畔。"),
            Pair(f"The {r.en} River flows through {n.en}.", f"{r.zh}河流经{n.zh}。"),
        ]))
    rest.append(Pair(f"The weather in {n.en} is usually {c.weather.en}.", f"{n.zh}的天气通常{c.weather.zh}。"))
    people = c.population_thousands * 1000
    rest.append(Pair(f"About {people:,} people live in {n.en}.", f"大约有{zh_number(people)}人住在{n.zh}。"))
    residents = [p for p in world.people if p.home is c]
    if residents:
        chosen = rng.sample(residents, min(len(residents), rng.randint(1, 3)))
        rest.append(Pair(f"{en_join([p.name.en for p in chosen])} {'lives' if len(chosen) == 1 else 'live'} in {n.en}.",
                         f"{zh_join([p.name.zh for p in chosen])}住在{n.zh}。"))
    rng.shuffle(rest)
    return facts + rest


def country_facts(rng: random.Random, world: World, k: Country) -> list[Pair]:
    n = k.name
    facts = [rng.choice([
        Pair(f"The capital of {n.en} is {k.capital.name.en}.", f"{n.zh}的首都是{k.capital.name.zh}。"),
        Pair(f"{k.capital.name.en} is the capital of {n.en}.", f"{k.capital.name.zh}是{n.zh}的首都。"),
    ])]
    cities = k.cities
    rest = [
        Pair(f"{n.en} is in the {k.region.en} of the continent.", f"{n.zh}位于大陆的{k.region.zh}。"),
        Pair(f"{n.en} is famous for its {k.product.en}.", f"{n.zh}以{k.product.zh}闻名。"),
        Pair(f"{n.en} has {en_number(len(cities))} cities: {en_join([c.name.en for c in cities])}.",
             f"{n.zh}有{zh_count(len(cities))}座城市：{zh_join([c.name.zh for c in cities])}。"),
        Pair(f"{n.en} borders {en_join([o.name.en for o in k.neighbours])}.",
             f"{n.zh}与{zh_join([o.name.zh for o in k.neighbours])}接壤。"),
    ]
    rng.shuffle(rest)
    return facts + rest


# ---- events, scenes and arithmetic ---------------------------------------------------------------

# Things that hold or stand near other things, by preposition, and things small enough to be put there.
SCENE_BASES = {
    "in": ("box", "bag", "basket", "house", "car", "boat", "bowl"),
    "on": ("table", "desk", "chair", "boat", "stone"),
    "under": ("table", "desk", "chair", "tree", "bridge", "umbrella"),
    "next to": ("table", "chair", "desk", "tree", "house", "bridge", "car", "door", "window", "lamp"),
    "behind": ("tree", "house", "door", "car", "chair", "desk"),
    "in front of": ("house", "door", "window", "tree", "car", "bridge"),
}
SMALL_THINGS = ("book", "pen", "cup", "bag", "hat", "kite", "umbrella", "clock", "letter", "map", "ball", "box",
                "key", "lamp", "shirt", "coat", "basket", "bottle", "phone", "ring", "flower", "ticket", "newspaper",
                "candle", "blanket", "notebook", "pencil", "apple", "orange", "egg", "cake", "stone", "shoe", "bowl",
                "scarf", "photo", "toy", "vase", "watermelon")
PETS_AND_FARM = 15          # the first animals of lexicon.ANIMALS are small or farm animals


def _thing(name: str) -> tuple:
    return next(t for t in L.THINGS if t[0] == name)


def thing_phrase(rng: random.Random, with_adjective: bool = True, things: tuple | None = None) -> tuple[str, str, tuple]:
    """('a red ball', '一个红色的球', THINGS entry)."""
    thing = _thing(rng.choice(things)) if things else rng.choice(L.THINGS)
    sing, _, zh, cl = thing
    if with_adjective:
        adj_en, adj_zh, _ = rng.choice(L.ADJECTIVES)
        return f"{en_article(adj_en)} {adj_en} {sing}", f"一{cl}{adj_zh}{zh}", thing
    return f"{en_article(sing)} {sing}", f"一{cl}{zh}", thing


def story(rng: random.Random, world: World, p: Person | None = None) -> list[Pair]:
    """A short past-tense narrative: a trip to a city and a few events, ending with a feeling."""
    p = p or rng.choice(world.people)
    city = rng.choice(world.cities)
    when_en, when_zh = rng.choice(L.PAST_TIMES)
    he = p.he
    out = [Pair(f"{when_en}, {p.name.en} went to {city.name.en}.", f"{when_zh}，{p.name.zh}去了{city.name.zh}。")]
    events = [
        lambda: _went(rng, he),
        lambda: _bought(rng, he),
        lambda: _saw_animal(rng, he),
        lambda: _met(rng, world, p),
        lambda: _meal(rng, he),
        lambda: _did_activity(rng, he),
        lambda: _found_lost(rng, he),
    ]
    said = set()
    for i in range(rng.randint(2, 5)):
        event = rng.choice(events)()
        if event.en in said:
            continue
        said.add(event.en)
        if i and rng.random() < 0.6:
            c_en, c_zh = rng.choice(L.CONNECTIVES)
            event = Pair(f"{c_en}, {event.en[0].lower() + event.en[1:] if not event.en.startswith(p.name.en) else event.en}",
                         f"{c_zh}，{event.zh}")
        out.append(event)
    feel_en, feel_zh = rng.choice(L.FEELINGS)
    end = rng.choice([("In the evening", "晚上"), ("At the end of the day", "这一天结束的时候"), ("Finally", "最后")])
    out.append(Pair(f"{end[0]}, {he.en} was very {feel_en}.", f"{end[1]}，{he.zh}{feel_zh}。"))
    return out


def _went(rng, he: Word) -> Pair:
    place = rng.choice(L.PLACES)
    if place[1] == "home":
        return Pair(f"{cap(he.en)} went home.", f"{he.zh}回家了。")
    return Pair(f"{cap(he.en)} went to {place[1]}.", f"{he.zh}去了{place[2]}。")


def _bought(rng, he: Word) -> Pair:
    en, zh, _ = thing_phrase(rng)
    place = _place(rng.choice(("at the market", "in a shop", "in a bookshop", "at the station")))
    return Pair(f"{cap(he.en)} bought {en} {place[0]}.", f"{he.zh}在{place[2]}买了{zh}。")


def _saw_animal(rng, he: Word) -> Pair:
    sing, _, zh, cl = rng.choice(L.ANIMALS)
    place = _place(rng.choice(("at the zoo", "in the park", "by the river", "on a farm", "in the garden")))
    return Pair(f"{cap(he.en)} saw {en_article(sing)} {sing} {place[0]}.", f"{he.zh}在{place[2]}看见了一{cl}{zh}。")


def _met(rng, world: World, p: Person) -> Pair:
    q = p.friend if p.friend is not None and rng.random() < 0.5 else rng.choice(world.people)
    if q is p:
        q = world.people[(world.people.index(p) + 1) % len(world.people)]
    place = rng.choice(L.PLACES)
    return Pair(f"{cap(p.he.en)} met {q.name.en} {place[0]}.", f"{p.he.zh}在{place[2]}遇见了{q.name.zh}。")


def _meal(rng, he: Word) -> Pair:
    en, zh, verb = rng.choice(L.MEALS)
    place = _place(rng.choice(("in a restaurant", "in a cafe", "at home")))
    if verb == "eat":
        return Pair(f"{cap(he.en)} ate {en} {place[0]}.", f"{he.zh}在{place[2]}吃了{zh}。")
    return Pair(f"{cap(he.en)} drank {en} {place[0]}.", f"{he.zh}在{place[2]}喝了{zh}。")


def _did_activity(rng, he: Word) -> Pair:
    activity = rng.choice(L.ACTIVITIES)
    place = _place(rng.choice(L.ACTIVITY_PLACES[activity[0]]))
    return Pair(f"{cap(he.en)} {activity[2]} {place[0]}.", f"{he.zh}在{place[2]}{activity[4]}。")


def _found_lost(rng, he: Word) -> Pair:
    base, past, zh_verb = rng.choice(L.THING_VERBS)
    en, zh, _ = thing_phrase(rng)
    return Pair(f"{cap(he.en)} {past} {en}.", f"{he.zh}{zh_verb}了{zh}。")


def scene(rng: random.Random) -> list[Pair]:
    """Where things are: 'There is a red ball under the table.' / '桌子下面有一个红色的球。'"""
    out = []
    for _ in range(rng.randint(3, 6)):
        prep_en, loc_zh = rng.choice(L.LOCATIONS)
        base_sing, _, base_zh, base_cl = _thing(rng.choice(SCENE_BASES[prep_en]))
        kind = rng.random()
        if kind < 0.45:
            en, zh, _ = thing_phrase(rng, things=SMALL_THINGS)
            out.append(Pair(f"There is {en} {prep_en} the {base_sing}.", f"{base_zh}{loc_zh}有{zh}。"))
        elif kind < 0.75:
            sing, plural, zh, cl = rng.choice([_thing(t) for t in SMALL_THINGS] + list(L.ANIMALS[:PETS_AND_FARM]))
            n = rng.randint(2, 12)
            out.append(Pair(f"There are {en_number(n)} {plural} {prep_en} the {base_sing}.",
                            f"{base_zh}{loc_zh}有{zh_count(n)}{cl}{zh}。"))
        else:
            adj_en, _, adj_pred = rng.choice(L.ADJECTIVES)
            out.append(Pair(f"The {base_sing} is {adj_en}.", f"这{base_cl}{base_zh}{adj_pred}。"))
    return out


def arithmetic_fact(rng: random.Random) -> tuple[Pair, int]:
    """'Seven plus five equals twelve.' / '七加五等于十二。' in words or digits; returns the result too."""
    op = rng.choice(("plus", "minus", "times"))
    if op == "times":
        a, b = rng.randint(1, 12), rng.randint(1, 12)
        c = a * b
    else:
        a, b = rng.randint(0, 50), rng.randint(0, 50)
        if op == "minus" and b > a:
            a, b = b, a
        c = a + b if op == "plus" else a - b
    zh_op = {"plus": "加", "minus": "减", "times": "乘以"}[op]
    if rng.random() < 0.5:
        return Pair(f"{a} {op} {b} equals {c}.", f"{a}{zh_op}{b}等于{c}。"), c
    return Pair(f"{cap(en_number(a))} {op} {en_number(b)} equals {en_number(c)}.",
                f"{zh_number(a)}{zh_op}{zh_number(b)}等于{zh_number(c)}。"), c


def word_problem(rng: random.Random, world: World) -> list[Pair]:
    """A counting story whose last sentence is the correct sum or difference."""
    return word_problem_with_question(rng, world)[0]


def word_problem_with_question(rng: random.Random, world: World) -> tuple[list[Pair], Pair]:
    """The story and the question its last sentence answers."""
    p, q = rng.sample(world.people, 2)
    sing, plural, zh, cl = rng.choice(L.THINGS[:50])
    a, b = rng.randint(1, 20), rng.randint(1, 20)
    def n_en(n: int) -> str:
        return f"{en_number(n)} {sing if n == 1 else plural}"
    out = [Pair(f"{p.name.en} has {n_en(a)}.", f"{p.name.zh}有{zh_count(a)}{cl}{zh}。")]
    if rng.random() < 0.5:
        out.append(Pair(f"{q.name.en} gives {p.him.en} {n_en(b)}.", f"{q.name.zh}给了{p.him.zh}{zh_count(b)}{cl}{zh}。"))
        total = a + b
    else:
        b = rng.randint(0, a)
        out.append(Pair(f"{cap(p.he.en)} gives {n_en(b)} to {q.name.en}.", f"{p.he.zh}给了{q.name.zh}{zh_count(b)}{cl}{zh}。"))
        total = a - b
    out.append(Pair(f"Now {p.name.en} has {n_en(total)}.", f"现在{p.name.zh}有{zh_count(total)}{cl}{zh}。"))
    return out, Pair(f"how many {plural} does {p.name.en} have now?", f"{p.name.zh}现在有几{cl}{zh}？")


def number_lesson(rng: random.Random, world: World) -> list[Pair]:
    out = []
    for _ in range(rng.randint(2, 4)):
        out.append(arithmetic_fact(rng)[0])
    if rng.random() < 0.7:
        out.extend(word_problem(rng, world))
    n = rng.randint(11, 999)
    out.append(Pair(f"The number {n} is written {en_number(n)}.", f"数字{n}写作{zh_number(n)}。"))
    return out


# ---- documents --------------------------------------------------------------------------------

def document(rng: random.Random, world: World) -> list[Pair]:
    """One independent document (any split of documents is a valid held-out split)."""
    kind = rng.choices(("person", "city", "country", "story", "numbers", "scene"), weights=(30, 14, 8, 28, 10, 10))[0]
    if kind == "person":
        p = rng.choice(world.people)
        out = person_facts(rng, world, p)
        if rng.random() < 0.5:
            out += story(rng, world, p)
    elif kind == "city":
        c = rng.choice(world.cities)
        out = city_facts(rng, world, c)
        if rng.random() < 0.4:
            out += country_facts(rng, world, c.country)[1:]
    elif kind == "country":
        k = rng.choice(world.countries)
        out = country_facts(rng, world, k) + city_facts(rng, world, k.capital)[1:]
    elif kind == "story":
        out = story(rng, world)
        if rng.random() < 0.4:
            out += story(rng, world)
    elif kind == "numbers":
        out = number_lesson(rng, world)
    else:
        out = scene(rng)
    return out


def en_text(pairs: list[Pair]) -> str:
    return " ".join(p.en for p in pairs)


def zh_text(pairs: list[Pair]) -> str:
    return "".join(p.zh for p in pairs)


def parallel_unit(rng: random.Random, world: World) -> Pair:
    """One to three consecutive sentences of a document, aligned."""
    pairs = document(rng, world)
    n = 1 if rng.random() < 0.7 else min(len(pairs), rng.randint(2, 3))
    start = rng.randrange(len(pairs) - n + 1)
    chunk = pairs[start:start + n]
    return Pair(en_text(chunk), zh_text(chunk))
