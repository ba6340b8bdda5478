"""Instructions and conversations whose answers follow from the world's facts.

Each task draws once and returns the English and the Chinese version together, so the two
instruction files ask about the same facts. Translation requests go zh->en in English files and
en->zh in Chinese files.
"""
from __future__ import annotations

import random

import synth_lexicon as L
import synth_sentences as S
from synth_sentences import Pair, cap
from synth_world import World, en_article, en_join, en_number, zh_join, zh_number

Triple = tuple[str, str, str]          # (instruction, input, output)


def _q(en: Triple, zh: Triple) -> dict[str, Triple]:
    return {"en": en, "zh": zh}


def ask_person(rng: random.Random, world: World) -> dict[str, Triple]:
    p = rng.choice(world.people)
    n = p.name
    options = [
        (f"Where does {n.en} live?", f"{n.en} lives in {p.home.name.en}, a city in {p.home.country.name.en}.",
         f"{n.zh}住在哪里？", f"{n.zh}住在{p.home.country.name.zh}的{p.home.name.zh}。"),
        (f"What is {n.en}'s job?", f"{n.en} is {en_article(p.job.en)} {p.job.en}.",
         f"{n.zh}的工作是什么？", f"{n.zh}是一名{p.job.zh}。"),
        (f"How old is {n.en}?", f"{n.en} is {p.age} years old.", f"{n.zh}今年多大了？", f"{n.zh}今年{zh_number(p.age)}岁。"),
        (f"Where was {n.en} born?", f"{n.en} was born in {p.birthplace.name.en}.",
         f"{n.zh}出生在哪里？", f"{n.zh}出生在{p.birthplace.name.zh}。"),
        (f"What food does {n.en} like?", f"{n.en} likes to eat {p.food.en}.",
         f"{n.zh}喜欢吃什么？", f"{n.zh}喜欢吃{p.food.zh}。"),
        (f"What is {n.en}'s favourite colour?", f"{n.en}'s favourite colour is {p.colour.en}.",
         f"{n.zh}最喜欢什么颜色？", f"{n.zh}最喜欢的颜色是{p.colour.zh}。"),
        (f"What does {n.en} like to do?", f"{n.en} likes to {p.activity[0]}.",
         f"{n.zh}喜欢做什么？", f"{n.zh}喜欢{p.activity[4]}。"),
    ]
    if p.friend is not None:
        options.append((f"Who is {n.en}'s best friend?", f"{n.en}'s best friend is {p.friend.name.en}.",
                        f"{n.zh}最好的朋友是谁？", f"{n.zh}最好的朋友是{p.friend.name.zh}。"))
    if p.pet is not None:
        options.append((f"What pet does {n.en} have?", f"{n.en} has {en_article(p.pet[0])} {p.pet[0]}.",
                        f"{n.zh}养了什么宠物？", f"{n.zh}养了一{p.pet[3]}{p.pet[2]}。"))
    q_en, a_en, q_zh, a_zh = rng.choice(options)
    return _q((q_en, "", a_en), (q_zh, "", a_zh))


def ask_place(rng: random.Random, world: World) -> dict[str, Triple]:
    c = rng.choice(world.cities)
    k = c.country
    options = [
        (f"Which country is {c.name.en} in?", f"{c.name.en} is in {k.name.en}.",
         f"{c.name.zh}在哪个国家？", f"{c.name.zh}在{k.name.zh}。"),
        (f"What is the capital of {k.name.en}?", f"The capital of {k.name.en} is {k.capital.name.en}.",
         f"{k.name.zh}的首都是哪座城市？", f"{k.name.zh}的首都是{k.capital.name.zh}。"),
        (f"What is the weather like in {c.name.en}?", f"The weather in {c.name.en} is usually {c.weather.en}.",
         f"{c.name.zh}的天气怎么样？", f"{c.name.zh}的天气通常{c.weather.zh}。"),
        (f"What is {k.name.en} famous for?", f"{k.name.en} is famous for its {k.product.en}.",
         f"{k.name.zh}以什么闻名？", f"{k.name.zh}以{k.product.zh}闻名。"),
        (f"Name the cities of {k.name.en}.", f"The cities of {k.name.en} are {en_join([x.name.en for x in k.cities])}.",
         f"请说出{k.name.zh}的城市。", f"{k.name.zh}的城市有{zh_join([x.name.zh for x in k.cities])}。"),
        (f"Which countries border {k.name.en}?", f"{k.name.en} borders {en_join([x.name.en for x in k.neighbours])}.",
         f"哪些国家与{k.name.zh}接壤？", f"与{k.name.zh}接壤的国家有{zh_join([x.name.zh for x in k.neighbours])}。"),
        (f"Is {c.name.en} a big city or a small city?", f"{c.name.en} is a {'big' if c.big else 'small'} city.",
         f"{c.name.zh}是大城市还是小城市？", f"{c.name.zh}是一座{'大' if c.big else '小'}城市。"),
        (f"In which part of the continent is {k.name.en}?", f"{k.name.en} is in the {k.region.en} of the continent.",
         f"{k.name.zh}位于大陆的哪个部分？", f"{k.name.zh}位于大陆的{k.region.zh}。"),
    ]
    if c.river is not None:
        options.append((f"Which river flows through {c.name.en}?", f"The {c.river.en} River flows through {c.name.en}.",
                        f"哪条河流经{c.name.zh}？", f"{c.river.zh}河流经{c.name.zh}。"))
    q_en, a_en, q_zh, a_zh = rng.choice(options)
    return _q((q_en, "", a_en), (q_zh, "", a_zh))


def ask_arithmetic(rng: random.Random, world: World) -> dict[str, Triple]:
    if rng.random() < 0.4:
        problem, question = S.word_problem_with_question(rng, world)
        return _q((f"Read the story and answer: {question.en}", S.en_text(problem[:-1]), problem[-1].en),
                  (f"阅读下面的故事并回答：{question.zh}", S.zh_text(problem[:-1]), problem[-1].zh))
    a, b = rng.randint(0, 99), rng.randint(0, 99)
    op, sign, zh_op = rng.choice((("plus", "+", "加"), ("minus", "-", "减"), ("times", "*", "乘以")))
    if op == "times":
        a, b = a % 13, b % 13
    if op == "minus" and b > a:
        a, b = b, a
    c = {"plus": a + b, "minus": a - b, "times": a * b}[op]
    if rng.random() < 0.5:
        return _q((f"What is {a} {op} {b}?", "", f"{a} {op} {b} equals {c}."),
                  (f"{a}{zh_op}{b}等于多少？", "", f"{a}{zh_op}{b}等于{c}。"))
    return _q(("Calculate the result.", f"{a} {sign} {b}", f"{a} {sign} {b} = {c}"),
              ("计算下面的算式。", f"{a} {sign} {b}", f"{a} {sign} {b} = {c}"))


def translate(rng: random.Random, world: World) -> dict[str, Triple]:
    unit = S.parallel_unit(rng, world)
    en_instr = rng.choice(("Translate the following Chinese text into English.", "Translate this sentence into English.",
                           "What does this Chinese text mean in English?"))
    zh_instr = rng.choice(("把下面的英文翻译成中文。", "请将这句话翻译成中文。", "这段英文用中文怎么说？"))
    return _q((en_instr, unit.zh, unit.en), (zh_instr, unit.en, unit.zh))


def word_task(rng: random.Random, world: World) -> dict[str, Triple]:
    kind = rng.randrange(7)
    if kind == 0:
        sing, plural, zh, cl = rng.choice(L.THINGS + L.ANIMALS)
        return _q((f'What is the plural of "{sing}"?', "", f'The plural of "{sing}" is "{plural}".'),
                  (f"“{zh}”的量词是什么？", "", f"“{zh}”的量词是“{cl}”，例如“一{cl}{zh}”。"))
    if kind == 1:
        a_en, b_en, a_zh, b_zh = rng.choice(L.OPPOSITES)
        if rng.random() < 0.5:
            a_en, b_en, a_zh, b_zh = b_en, a_en, b_zh, a_zh
        return _q((f'What is the opposite of "{a_en}"?', "", f'The opposite of "{a_en}" is "{b_en}".'),
                  (f"“{a_zh}”的反义词是什么？", "", f"“{a_zh}”的反义词是“{b_zh}”。"))
    if kind == 2:
        n = rng.randint(0, 9999) if rng.random() < 0.3 else rng.randint(0, 999)
        n_en = en_number(n)
        return _q((f"Write the number {n} in words.", "", n_en),
                  (f"用汉字写出数字{n}。", "", zh_number(n)))
    if kind == 3:
        nums = [rng.randint(0, 99) for _ in range(rng.randint(3, 8))]
        desc = rng.random() < 0.3
        out = sorted(nums, reverse=desc)
        return _q((f"Sort the following numbers from {'largest to smallest' if desc else 'smallest to largest'}.",
                   ", ".join(map(str, nums)), ", ".join(map(str, out))),
                  (f"把下面的数字按{'从大到小' if desc else '从小到大'}排列。", "、".join(map(str, nums)), "、".join(map(str, out))))
    if kind == 4:
        sentence = rng.choice(S.document(rng, world))
        words = sentence.en.rstrip(".").split()
        hanzi = sum("\u4e00" <= ch <= "\u9fff" for ch in sentence.zh)
        return _q(("How many words are in this sentence?", sentence.en, f"The sentence has {en_number(len(words))} words."),
                  ("这句话有多少个汉字？", sentence.zh, f"这句话有{zh_number(hanzi)}个汉字。"))
    if kind == 5:
        i = rng.randrange(7)
        day, nxt = L.WEEKDAYS[i], L.WEEKDAYS[(i + 1) % 7]
        return _q((f"What day comes after {day[0]}?", "", f"{nxt[0]} comes after {day[0]}."),
                  (f"{day[1]}的后一天是星期几？", "", f"{day[1]}的后一天是{nxt[1]}。"))
    sing, plural, zh, cl = rng.choice(L.ANIMALS)
    return _q((f"Translate the word \"{sing}\" into Chinese.", "", f'"{sing}" is "{zh}" in Chinese.'),
              (f"“{zh}”用英文怎么说？", "", f"“{zh}”的英文是“{sing}”。"))


def describe(rng: random.Random, world: World) -> dict[str, Triple]:
    kind = rng.randrange(3)
    if kind == 0:
        p = rng.choice(world.people)
        pairs = S.person_facts(rng, world, p)
        return _q((f"Tell me about {p.name.en}.", "", S.en_text(pairs)), (f"介绍一下{p.name.zh}。", "", S.zh_text(pairs)))
    if kind == 1:
        c = rng.choice(world.cities)
        pairs = S.city_facts(rng, world, c)
        return _q((f"Describe the city of {c.name.en}.", "", S.en_text(pairs)), (f"描述一下{c.name.zh}这座城市。", "", S.zh_text(pairs)))
    p = rng.choice(world.people)
    pairs = S.story(rng, world, p)
    return _q((f"Write a short story about {p.name.en}.", "", S.en_text(pairs)),
              (f"写一个关于{p.name.zh}的小故事。", "", S.zh_text(pairs)))


TASKS = ((ask_person, 25), (ask_place, 20), (ask_arithmetic, 12), (translate, 18), (word_task, 12), (describe, 13))


def instruction(rng: random.Random, world: World) -> dict[str, Triple]:
    task = rng.choices([t for t, _ in TASKS], weights=[w for _, w in TASKS])[0]
    return task(rng, world)


# ---- multi-turn conversations -------------------------------------------------------------------

def conversation(rng: random.Random, world: World) -> dict[str, list[tuple[str, str]]]:
    """(human, gpt) rounds in both languages: follow-up questions use pronouns for the same person or
    keep a running sum; the last round may ask to translate the previous answer into the other language."""
    en, zh = [], []
    last = None                                          # the previous answer as a Pair
    if rng.random() < 0.7:
        p = rng.choice(world.people)
        he, n = p.he, p.name
        rounds = [
            (f"Who is {n.en}?", f"{n.en} is {en_article(p.job.en)} {p.job.en} who lives in {p.home.name.en}.",
             f"{n.zh}是谁？", f"{n.zh}是一名{p.job.zh}，住在{p.home.name.zh}。"),
            (f"How old is {he.en}?", f"{cap(he.en)} is {p.age} years old.", f"{he.zh}多大了？", f"{he.zh}今年{zh_number(p.age)}岁。"),
            (f"What does {he.en} like to do?", f"{cap(he.en)} likes to {p.activity[0]}.",
             f"{he.zh}喜欢做什么？", f"{he.zh}喜欢{p.activity[4]}。"),
            (f"What is {p.his.en} favourite food?", f"{cap(p.his.en)} favourite food is {p.food.en}.",
             f"{he.zh}最喜欢吃什么？", f"{he.zh}最喜欢吃{p.food.zh}。"),
        ]
        if p.friend is not None:
            f = p.friend
            rounds.append((f"Who is {p.his.en} best friend?", f"{cap(p.his.en)} best friend is {f.name.en}.",
                           f"{he.zh}最好的朋友是谁？", f"{he.zh}最好的朋友是{f.name.zh}。"))
        # The question about the city comes last so that he/she never follows it.
        rounds.append((f"Which country is {p.home.name.en} in?", f"{p.home.name.en} is in {p.home.country.name.en}.",
                       f"{p.home.name.zh}在哪个国家？", f"{p.home.name.zh}在{p.home.country.name.zh}。"))
        follow_ups = sorted(rng.sample(range(1, len(rounds)), rng.randint(1, min(3, len(rounds) - 1))))
        chosen = [rounds[0]] + [rounds[i] for i in follow_ups]
        for q_en, a_en, q_zh, a_zh in chosen:
            en.append((q_en, a_en))
            zh.append((q_zh, a_zh))
            last = Pair(a_en, a_zh)
    else:
        a, b = rng.randint(1, 30), rng.randint(1, 30)
        total = a + b
        en.append((f"What is {a} plus {b}?", f"{a} plus {b} equals {total}."))
        zh.append((f"{a}加{b}等于多少？", f"{a}加{b}等于{total}。"))
        for _ in range(rng.randint(1, 3)):
            if rng.random() < 0.6:
                b = rng.randint(1, 20)
                q_en, q_zh, new = f"Now add {b}.", f"再加{b}呢？", total + b
                a_en, a_zh = f"{total} plus {b} equals {new}.", f"{total}加{b}等于{new}。"
            else:
                b = rng.randint(2, 4)
                q_en, q_zh, new = f"Now multiply the result by {b}.", f"再把结果乘以{b}呢？", total * b
                a_en, a_zh = f"{total} times {b} equals {new}.", f"{total}乘以{b}等于{new}。"
            en.append((q_en, a_en))
            zh.append((q_zh, a_zh))
            total = new
            last = Pair(a_en, a_zh)
    if last is not None and rng.random() < 0.35:
        en.append(("Translate your last answer into Chinese.", last.zh))
        zh.append(("把你上一个回答翻译成英文。", last.en))
    return {"en": en, "zh": zh}
