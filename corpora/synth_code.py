"""Small Python modules generated from templates, with docstrings, comments and checked examples.

Each template varies names, style (loop or built-in, type hints or not) and comment language
(English or Chinese). Doctest examples are not written by hand: the generated function is run and
its real results are put into the docstring, so every example in the corpus is correct.
"""
from __future__ import annotations

import random
import re
import textwrap

import synth_lexicon as L
from synth_world import World

EXAMPLES = "@@EXAMPLES@@"


def _comment(rng: random.Random, en: str, zh: str) -> str:
    return "# " + (zh if rng.random() < 0.35 else en)


def _noun(rng: random.Random) -> tuple[str, str]:
    sing, plural, zh, _ = rng.choice(L.THINGS[:50])
    return sing.replace(" ", "_"), plural.replace(" ", "_")


def _nums(rng: random.Random, n: int, lo: int = 0, hi: int = 20) -> list[int]:
    return [rng.randint(lo, hi) for _ in range(n)]


def t_total(rng, world):
    sing, plural = _noun(rng)
    name = f"total_{plural}"
    hint = rng.random() < 0.5
    sig = f"def {name}(counts: list[int]) -> int:" if hint else f"def {name}(counts):"
    if rng.random() < 0.5:
        body = f"""    total = 0
    for count in counts:
        {_comment(rng, "add this basket to the running total", "把这个篮子的数量加到总数里")}
        total += count
    return total"""
    else:
        body = "    return sum(counts)"
    doc = f'    """Return how many {plural} there are in all the baskets together.\n\n{EXAMPLES}    """'
    calls = [f"{name}({_nums(rng, rng.randint(2, 5))})", f"{name}([])"]
    return f"{sig}\n{doc}\n{body}\n", calls


def t_largest(rng, world):
    _, plural = _noun(rng)
    name = rng.choice((f"most_{plural}", f"largest_{rng.choice(('count', 'value', 'number'))}"))
    if rng.random() < 0.5:
        body = f"""    if not values:
        raise ValueError("values must not be empty")
    best = values[0]
    for value in values[1:]:
        {_comment(rng, "keep the larger of the two", "保留较大的那个")}
        if value > best:
            best = value
    return best"""
    else:
        body = """    if not values:
        raise ValueError("values must not be empty")
    return max(values)"""
    doc = f'    """Return the largest number in a non-empty list.\n\n{EXAMPLES}    """'
    calls = [f"{name}({_nums(rng, rng.randint(2, 6), 0, 99)})", f"{name}([{rng.randint(0, 9)}])"]
    return f"def {name}(values):\n{doc}\n{body}\n", calls


def t_average(rng, world):
    sing, _ = _noun(rng)
    name = f"average_{sing}_price"
    body = f"""    if not prices:
        {_comment(rng, "no prices: avoid dividing by zero", "没有价格时避免除以零")}
        return 0.0
    return round(sum(prices) / len(prices), 2)"""
    doc = f'    """Return the average price of a {sing}, rounded to two decimals (0.0 for no prices).\n\n{EXAMPLES}    """'
    calls = [f"{name}({[round(rng.uniform(1, 50), 1) for _ in range(rng.randint(2, 4))]})", f"{name}([])"]
    return f"def {name}(prices):\n{doc}\n{body}\n", calls


def t_count_word(rng, world):
    name = rng.choice(("count_word", "count_occurrences", "how_many_times"))
    words = [rng.choice(L.ANIMALS)[0] for _ in range(rng.randint(3, 7))]
    target = rng.choice(words)
    if rng.random() < 0.5:
        body = """    count = 0
    for word in words:
        if word == target:
            count += 1
    return count"""
    else:
        body = "    return sum(1 for word in words if word == target)"
    doc = f'    """Count how many times target appears in the list of words.\n\n{EXAMPLES}    """'
    calls = [f"{name}({words!r}, {target!r})", f"{name}({words!r}, 'unicorn')"]
    return f"def {name}(words, target):\n{doc}\n{body}\n", calls


def t_filter(rng, world):
    kind = rng.choice(("even", "odd", "greater"))
    if kind == "greater":
        name, sig = "greater_than", "def greater_than(numbers, limit):"
        cond, doc_line = "number > limit", "Return the numbers that are greater than limit, in order."
        calls = [f"greater_than({_nums(rng, 6, 0, 30)}, {rng.randint(5, 20)})"]
    else:
        name, sig = f"{kind}_numbers", f"def {kind}_numbers(numbers):"
        cond = "number % 2 == 0" if kind == "even" else "number % 2 == 1"
        doc_line = f"Return the {kind} numbers of the list, in order."
        calls = [f"{name}({_nums(rng, 7, 0, 30)})"]
    if rng.random() < 0.5:
        body = f"    return [number for number in numbers if {cond}]"
    else:
        body = f"""    result = []
    for number in numbers:
        if {cond}:
            result.append(number)
    return result"""
    return f'{sig}\n    """{doc_line}\n\n{EXAMPLES}    """\n{body}\n', calls


def t_factorial(rng, world):
    if rng.random() < 0.5:
        body = """    result = 1
    for i in range(2, n + 1):
        result *= i
    return result"""
    else:
        body = f"""    {_comment(rng, "the factorial of 0 and 1 is 1", "0 和 1 的阶乘都是 1")}
    if n <= 1:
        return 1
    return n * factorial(n - 1)"""
    doc = f'    """Return n! for a non-negative integer n.\n\n{EXAMPLES}    """'
    return f"def factorial(n):\n{doc}\n{body}\n", [f"factorial({rng.randint(0, 10)})", f"factorial({rng.randint(3, 8)})"]


def t_fibonacci(rng, world):
    body = f"""    a, b = 0, 1
    for _ in range(n):
        {_comment(rng, "move one step along the sequence", "沿数列前进一步")}
        a, b = b, a + b
    return a"""
    doc = f'    """Return the n-th Fibonacci number (fibonacci(0) is 0).\n\n{EXAMPLES}    """'
    return f"def fibonacci(n):\n{doc}\n{body}\n", [f"fibonacci({rng.randint(1, 25)})", "fibonacci(0)"]


def t_gcd(rng, world):
    body = f"""    while b:
        {_comment(rng, "Euclid: replace (a, b) by (b, a mod b)", "欧几里得算法：用 (b, a mod b) 代替 (a, b)")}
        a, b = b, a % b
    return a"""
    doc = f'    """Return the greatest common divisor of two non-negative integers.\n\n{EXAMPLES}    """'
    k = rng.randint(2, 9)
    return f"def gcd(a, b):\n{doc}\n{body}\n", [f"gcd({k * rng.randint(1, 12)}, {k * rng.randint(1, 12)})", f"gcd({rng.randint(1, 50)}, 0)"]


def t_is_prime(rng, world):
    body = f"""    if n < 2:
        return False
    i = 2
    while i * i <= n:
        {_comment(rng, "a divisor up to the square root is enough", "只需检查到平方根")}
        if n % i == 0:
            return False
        i += 1
    return True"""
    doc = f'    """Return True if n is a prime number.\n\n{EXAMPLES}    """'
    return f"def is_prime(n):\n{doc}\n{body}\n", [f"is_prime({rng.randint(2, 100)})", f"is_prime({rng.randint(2, 100)})", "is_prime(1)"]


def t_strings(rng, world):
    kind = rng.randrange(3)
    if kind == 0:
        body = "    return \" \".join(reversed(sentence.split()))"
        doc = f'    """Return the sentence with its words in reverse order.\n\n{EXAMPLES}    """'
        words = [rng.choice(L.THINGS)[0] for _ in range(rng.randint(2, 5))]
        return f"def reverse_words(sentence):\n{doc}\n{body}\n", [f"reverse_words({' '.join(words)!r})"]
    if kind == 1:
        body = f"""    {_comment(rng, "ignore case when comparing", "比较时忽略大小写")}
    word = word.lower()
    return word == word[::-1]"""
        doc = f'    """Return True if the word reads the same backwards.\n\n{EXAMPLES}    """'
        return f"def is_palindrome(word):\n{doc}\n{body}\n", [
            f"is_palindrome({rng.choice(('Level', 'noon', 'kayak', 'radar', 'civic'))!r})",
            f"is_palindrome({rng.choice(L.ANIMALS)[0]!r})"]
    body = """    return sum(1 for letter in word.lower() if letter in "aeiou")"""
    doc = f'    """Count the vowels (a, e, i, o, u) in a word.\n\n{EXAMPLES}    """'
    return f"def count_vowels(word):\n{doc}\n{body}\n", [f"count_vowels({rng.choice(L.ANIMALS)[0]!r})",
                                                        f"count_vowels({rng.choice(L.THINGS)[0]!r})"]


def t_temperature(rng, world):
    if rng.random() < 0.5:
        body = "    return celsius * 9 / 5 + 32"
        doc = f'    """Convert a temperature from degrees Celsius to degrees Fahrenheit.\n\n{EXAMPLES}    """'
        return f"def celsius_to_fahrenheit(celsius):\n{doc}\n{body}\n", [
            f"celsius_to_fahrenheit({rng.choice((0, 100, -40, 25, 37, 10))})"]
    body = "    return (fahrenheit - 32) * 5 / 9"
    doc = f'    """Convert a temperature from degrees Fahrenheit to degrees Celsius.\n\n{EXAMPLES}    """'
    return f"def fahrenheit_to_celsius(fahrenheit):\n{doc}\n{body}\n", [
        f"fahrenheit_to_celsius({rng.choice((32, 212, -40, 50, 104))})"]


def t_capitals(rng, world):
    countries = rng.sample(world.countries, rng.randint(3, 6))
    items = "\n".join(f"    {k.name.en!r}: {k.capital.name.en!r}," for k in countries)
    comment = _comment(rng, "capital city of each country", "每个国家的首都")
    code = f"""{comment}
CAPITALS = {{
{items}
}}


def capital_of(country):
    \"\"\"Return the capital of a country, or "unknown" if it is not in CAPITALS.

{EXAMPLES}    \"\"\"
    return CAPITALS.get(country, "unknown")
"""
    return code, [f"capital_of({countries[0].name.en!r})", f"capital_of({countries[-1].name.en!r})", "capital_of('Atlantis')"]


def t_translate(rng, world):
    words = rng.sample(L.ANIMALS + L.THINGS, rng.randint(4, 7))
    items = "\n".join(f"    {w[0]!r}: {w[2]!r}," for w in words)
    comment = _comment(rng, "English word -> Chinese word", "英文单词 -> 中文词语")
    code = f"""{comment}
EN_TO_ZH = {{
{items}
}}


def translate_words(words):
    \"\"\"Translate English words into Chinese; unknown words are kept as they are.

{EXAMPLES}    \"\"\"
    return [EN_TO_ZH.get(word, word) for word in words]
"""
    chosen = [w[0] for w in rng.sample(words, 2)] + ["hello"]
    return code, [f"translate_words({chosen!r})"]


def t_person_class(rng, world):
    p = rng.choice(world.people)
    code = f"""class Person:
    \"\"\"A person with a name, an age and a home city.\"\"\"

    def __init__(self, name, age, city):
        self.name = name
        self.age = age
        self.city = city

    def greet(self):
        \"\"\"Return a one-sentence introduction.

{EXAMPLES}        \"\"\"
        return f"Hello, my name is {{self.name}} and I live in {{self.city}}."

    def is_older_than(self, other):
        {_comment(rng, "compare ages only", "只比较年龄")}
        return self.age > other.age
"""
    return code, [f"Person({p.name.en!r}, {p.age}, {p.home.name.en!r}).greet()"]


def t_word_problem(rng, world):
    sing, plural = _noun(rng)
    name = f"{plural}_left"
    body = f"""    if given > start:
        raise ValueError("cannot give away more {plural} than there are")
    {_comment(rng, "what is left after giving some away", "送出一些之后剩下的数量")}
    return start - given"""
    doc = f'    """Return how many {plural} are left after giving some away.\n\n{EXAMPLES}    """'
    a = rng.randint(5, 30)
    return f"def {name}(start, given):\n{doc}\n{body}\n", [f"{name}({a}, {rng.randint(0, a)})"]


TEMPLATES = (t_total, t_largest, t_average, t_count_word, t_filter, t_factorial, t_fibonacci, t_gcd, t_is_prime,
             t_strings, t_temperature, t_capitals, t_translate, t_person_class, t_word_problem)


def _with_examples(code: str, calls: list[str]) -> str:
    """Run the code, then write each call and its actual result into the docstring as a doctest.

    The marker sits at the start of a line, right before the docstring's closing quotes; the
    examples take the indentation of those quotes.
    """
    namespace: dict = {}
    exec(compile(code.replace(EXAMPLES, ""), "<generated>", "exec"), namespace)
    lines = []
    for call in calls:
        lines.append(f">>> {call}")
        lines.append(repr(eval(call, namespace)))
    match = re.search(re.escape(EXAMPLES) + r'( *)"""', code)
    indent = match.group(1)
    return code.replace(EXAMPLES, textwrap.indent("\n".join(lines), indent) + "\n")


def module(rng: random.Random, world: World) -> str:
    """One to three generated functions (or a class) separated as in a source file.

    Templates are drawn without replacement so no name is defined twice in one module.
    """
    templates = rng.sample(TEMPLATES, rng.choices((1, 2, 3), (5, 3, 1))[0])
    parts = [_with_examples(*template(rng, world)) for template in templates]
    return "\n\n".join(parts)
