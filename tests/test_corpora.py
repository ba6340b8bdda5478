"""The bundled synthetic corpora: layouts, determinism, committed files = fresh generation, consistency."""
from __future__ import annotations

import ast
import doctest
import importlib.util
import json
import re
import sys
from pathlib import Path

import pytest

from chatflow_plugin.errors import ChatflowError

ROOT = Path(__file__).resolve().parent.parent
CORPORA = ROOT / "corpora"
SHARED = Path("/work/shared/data")
CJK = re.compile(r"[\u4e00-\u9fff]")
LATIN = re.compile(r"[A-Za-z]")


def _load_generate():
    spec = importlib.util.spec_from_file_location("corpora_generate", CORPORA / "generate.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["corpora_generate"] = module
    spec.loader.exec_module(module)
    return module


gen = _load_generate()
import synth_code  # noqa: E402  (importable once generate.py put corpora/ on sys.path)
import synth_instructions  # noqa: E402
import synth_sentences  # noqa: E402
import synth_world  # noqa: E402

FILES = list(gen.BASE_COUNTS)
KEYS = {
    "en_corpus": {"text"}, "zh_corpus": {"text"}, "parallel": {"en", "zh"}, "code": {"text"},
    "inst": {"instruction", "input", "output"}, "multiturn": {"conversations"},
}


def _kind(rel_path: str) -> str:
    if rel_path.endswith("_multiturn.jsonl"):
        return "multiturn"
    if rel_path.endswith("_inst.jsonl"):
        return "inst"
    return rel_path.split("/")[0]


def read_jsonl(path: Path) -> list[dict]:
    """Parse a corpus file strictly: UTF-8, no BOM, `\\n` endings, final newline, no blank lines."""
    raw = path.read_bytes()
    assert raw, f"{path} is empty"
    assert not raw.startswith(b"\xef\xbb\xbf"), f"{path} has a BOM"
    assert raw.endswith(b"\n") and b"\r" not in raw, f"{path}: line ends must be \\n with a final newline"
    lines = raw.decode("utf-8").split("\n")[:-1]
    assert all(lines), f"{path} has a blank line"
    return [json.loads(line) for line in lines]


def check_record(rel_path: str, record: dict, where: str) -> None:
    kind = _kind(rel_path)
    assert set(record) == KEYS[kind], where
    if kind == "multiturn":
        turns = record["conversations"]
        assert len(turns) >= 2 and len(turns) % 2 == 0, where
        for i, turn in enumerate(turns):
            assert set(turn) == {"from", "value"}, where
            assert turn["from"] == ("human" if i % 2 == 0 else "gpt"), f"{where}: turn {i} not alternating"
            assert isinstance(turn["value"], str) and turn["value"].strip(), where
        return
    for key, value in record.items():
        assert isinstance(value, str), where
        if key != "input":
            assert value.strip(), f"{where}: empty {key}"


@pytest.fixture(scope="module")
def committed() -> dict[str, list[dict]]:
    return {rel: read_jsonl(CORPORA / rel) for rel in FILES}


@pytest.fixture(scope="module")
def fresh_default(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("default")
    gen.generate(out, scale=1.0, seed=0)
    gen.generate_benchmarks(out, seed=0)
    return out


# ---- the committed files ----------------------------------------------------------------------

def test_committed_files_are_exactly_a_fresh_default_generation(fresh_default):
    for rel in FILES:
        assert (CORPORA / rel).read_bytes() == (fresh_default / rel).read_bytes(), (
            f"corpora/{rel} differs from `python corpora/generate.py` output: regenerate, never hand-edit")
    committed_jsonl = sorted(str(p.relative_to(CORPORA)) for p in CORPORA.glob("*/*.jsonl"))
    assert committed_jsonl == sorted(FILES), "a corpus file exists that the generator does not write"


def test_committed_benchmarks_are_exactly_a_fresh_default_generation(fresh_default):
    def files(root: Path) -> list[str]:
        return sorted(str(p.relative_to(root)) for p in (root / gen.BENCHMARK_DIR).rglob("*") if p.is_file())

    generated = files(fresh_default)
    assert files(CORPORA) == generated, "corpora/benchmarks holds a file the generator does not write, or lacks one"
    for rel in generated:
        assert (CORPORA / rel).read_bytes() == (fresh_default / rel).read_bytes(), (
            f"corpora/{rel} differs from `python corpora/generate.py` output: regenerate, never hand-edit")


def test_committed_files_have_the_documented_layouts(committed):
    for rel, records in committed.items():
        assert len(records) == gen.BASE_COUNTS[rel]
        for i, record in enumerate(records, 1):
            check_record(rel, record, f"{rel}:{i}")


def test_non_ascii_is_literal_and_separators_escaped():
    for rel in FILES:
        text = (CORPORA / rel).read_text(encoding="utf-8")
        assert "\\u4e" not in text and "\\u5" not in text, f"{rel}: Chinese written as escapes"
        assert not any(ch in text for ch in ("\u0085", "\u2028", "\u2029")), rel
    assert CJK.search((CORPORA / "zh_corpus/synthetic_zh.jsonl").read_text(encoding="utf-8"))
    assert gen.json_line({"t": "a\u2028b中"}) == '{"t": "a\\u2028b中"}\n'


def test_records_are_unique_within_each_file(committed):
    for rel, records in committed.items():
        lines = [json.dumps(r, ensure_ascii=False, sort_keys=True) for r in records]
        assert len(set(lines)) == len(lines), f"{rel} has duplicate records"


def test_parallel_pairs_are_nonempty_distinct_and_in_the_right_languages(committed):
    pairs = committed["parallel/synthetic_en_zh.jsonl"]
    assert len({p["en"] for p in pairs}) == len(pairs), "an English side occurs twice"
    assert len({p["zh"] for p in pairs}) == len(pairs), "a Chinese side occurs twice"
    for i, p in enumerate(pairs, 1):
        assert p["en"].strip() and p["zh"].strip() and p["en"] != p["zh"], i
        assert not CJK.search(p["en"]), f"line {i}: Chinese in the English side"
        assert CJK.search(p["zh"]) and not LATIN.search(p["zh"]), f"line {i}: Latin letters in the Chinese side"


def test_monolingual_text_stays_in_its_language(committed):
    for r in committed["en_corpus/synthetic_en.jsonl"]:
        assert not CJK.search(r["text"]), r
    for r in committed["zh_corpus/synthetic_zh.jsonl"]:
        assert CJK.search(r["text"]) and not LATIN.search(r["text"]), r
    zh_answers = [r["output"] for r in committed["zh_inst/synthetic_zh_inst.jsonl"]]
    assert sum(bool(CJK.search(a)) for a in zh_answers) > 0.8 * len(zh_answers)


def test_documents_are_multi_sentence(committed):
    docs = committed["en_corpus/synthetic_en.jsonl"]
    assert sum(d["text"].count(". ") >= 2 for d in docs) > 0.95 * len(docs)
    words = sum(len(d["text"].split()) for d in docs)
    assert words > 200_000, f"only {words} English words at the default scale"


def test_instruction_files_cover_translation_in_the_documented_directions(committed):
    en = committed["en_inst/synthetic_en_inst.jsonl"]
    zh = committed["zh_inst/synthetic_zh_inst.jsonl"]
    en_tr = [r for r in en if r["instruction"].startswith(("Translate the following Chinese", "Translate this sentence"))]
    zh_tr = [r for r in zh if "翻译成中文" in r["instruction"]]
    assert en_tr and zh_tr
    assert all(CJK.search(r["input"]) and not CJK.search(r["output"]) for r in en_tr)        # zh -> en
    assert all(not CJK.search(r["input"]) and CJK.search(r["output"]) for r in zh_tr)        # en -> zh


def test_every_code_record_compiles_and_its_examples_are_true(committed):
    parser = doctest.DocTestParser()
    attempted = 0
    for i, record in enumerate(committed["code/synthetic_code.jsonl"], 1):
        source = record["text"]
        namespace: dict = {}
        exec(compile(source, f"code:{i}", "exec"), namespace)
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and ast.get_docstring(node):
                test = parser.get_doctest(ast.get_docstring(node), namespace, node.name, f"code:{i}", 0)
                result = doctest.DocTestRunner(verbose=False).run(test, out=lambda s: None)
                assert result.failed == 0, f"code record {i}: a docstring example is wrong\n{source}"
                attempted += result.attempted
    assert attempted >= 300


# ---- the facts agree everywhere --------------------------------------------------------------------

def test_facts_in_english_and_chinese_text_agree_with_the_world(committed):
    world = synth_world.build_world(0)
    capital_en = {k.name.en: k.capital.name.en for k in world.countries}
    capital_zh = {k.name.zh: k.capital.name.zh for k in world.countries}
    home_en = {p.name.en: p.home.name.en for p in world.people}
    home_zh = {p.name.zh: p.home.name.zh for p in world.people}
    country_of_zh = {c.name.zh: c.country.name.zh for c in world.cities}
    en_text = " ".join(r["text"] for r in committed["en_corpus/synthetic_en.jsonl"])
    zh_text = "".join(r["text"] for r in committed["zh_corpus/synthetic_zh.jsonl"])
    en_caps = re.findall(r"The capital of (\w+) is (\w+)\.", en_text)
    zh_caps = re.findall(r"([\u4e00-\u9fff]+?)的首都是([\u4e00-\u9fff]+?)。", zh_text)
    en_homes = re.findall(r"([A-Z]\w+(?: [A-Z]\w+)?) lives in (\w+)\.", en_text)
    zh_homes = re.findall(r"(?:^|。|，)([\u4e00-\u9fff]{1,4})住在(?:([\u4e00-\u9fff]+?)的)?([\u4e00-\u9fff]+?)。", zh_text)
    assert len(en_caps) > 20 and len(zh_caps) > 10 and len(en_homes) > 100 and len(zh_homes) > 50
    assert all(capital_en[k] == c for k, c in en_caps)
    assert all(capital_zh[k] == c for k, c in zh_caps)
    assert all(home_en[p] == c for p, c in en_homes if p in home_en)
    assert all(home_zh[p] == c for p, _, c in zh_homes if p in home_zh)
    assert all(country_of_zh[c] == k for _, k, c in zh_homes if k)


def test_instruction_answers_agree_with_the_world(committed):
    world = synth_world.build_world(0)
    ages = {p.name.en: p.age for p in world.people}
    checked = 0
    for r in committed["en_inst/synthetic_en_inst.jsonl"]:
        if m := re.fullmatch(r"How old is (.+)\?", r["instruction"]):
            assert r["output"] == f"{m[1]} is {ages[m[1]]} years old."
            checked += 1
        if m := re.fullmatch(r"What is (\d+) (plus|minus|times) (\d+)\?", r["instruction"]):
            a, op, b = int(m[1]), m[2], int(m[3])
            assert r["output"].endswith(f" equals {a + b if op == 'plus' else a - b if op == 'minus' else a * b}.")
            checked += 1
    assert checked > 20


# ---- generation ---------------------------------------------------------------------------------

def test_generation_is_deterministic_and_seed_dependent(tmp_path):
    a = gen.generate(tmp_path / "a", scale=0.03, seed=7)
    b = gen.generate(tmp_path / "b", scale=0.03, seed=7)
    gen.generate(tmp_path / "c", scale=0.03, seed=8)
    assert a == b
    for rel in FILES:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel
        check_record(rel, read_jsonl(tmp_path / "a" / rel)[0], rel)
        assert a[rel] == (gen.record_count(gen.BASE_COUNTS[rel], 0.03), (tmp_path / "a" / rel).stat().st_size)
    assert (tmp_path / "a" / FILES[0]).read_bytes() != (tmp_path / "c" / FILES[0]).read_bytes()
    assert not list((tmp_path / "a").rglob("*.tmp")), "temporary files left behind"


def test_smaller_scale_gives_fewer_records_and_at_least_one(tmp_path):
    summary = gen.generate(tmp_path, scale=0.0001, seed=0)
    assert all(n == 1 for n, _ in summary.values())
    assert gen.record_count(4500, 0.5) == 2250


def test_bad_scale_is_a_clear_error(tmp_path, capsys):
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ChatflowError, match="--scale"):
            gen.generate(tmp_path, scale=bad)
    assert gen.cli_main(["--scale", "0", "--output_dir", str(tmp_path)]) == 2
    assert "error: --scale must be > 0" in capsys.readouterr().err
    assert not any(tmp_path.iterdir()), "nothing may be written on bad options"


def test_cli_writes_files_and_prints_a_summary(tmp_path, capsys):
    assert gen.cli_main(["--scale", "0.01", "--seed", "3", "--output_dir", str(tmp_path)]) == 0
    table = capsys.readouterr().out
    assert "| total |" in table and "`parallel/synthetic_en_zh.jsonl`" in table
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*.jsonl")) == sorted(FILES)


def test_exhausted_uniqueness_is_an_error_not_a_short_file():
    with pytest.raises(ChatflowError, match="distinct"):
        gen.unique_records(lambda: {"text": "same"}, 3, "demo")
    assert gen.unique_records(iter([{"x": 1}, {"x": 1}, {"x": 2}]).__next__, 2, "demo") == [{"x": 1}, {"x": 2}]


def test_build_records_rejects_an_unknown_file():
    with pytest.raises(ChatflowError, match="no generator"):
        gen.build_records("other/x.jsonl", synth_world.build_world(0), 1, 0)


def test_summary_table():
    table = gen.summary_table({"a.jsonl": (2, 1000), "b.jsonl": (3, 24)})
    assert table.splitlines()[-1] == "| total | 5 | 1,024 |"


# ---- the world and the language pieces ---------------------------------------------------------------

def test_world_is_deterministic_and_consistent():
    w1, w2 = synth_world.build_world(0), synth_world.build_world(0)
    assert [p.name for p in w1.people] == [p.name for p in w2.people]
    assert [c.name for c in w1.cities] != [c.name for c in synth_world.build_world(1).cities]
    names_en = [x.name.en for x in w1.countries + w1.cities] + [r.en for r in w1.rivers]
    names_zh = [x.name.zh for x in w1.countries + w1.cities] + [r.zh for r in w1.rivers]
    assert len(set(names_en)) == len(names_en) and len(set(names_zh)) == len(names_zh)
    assert len({p.name.en for p in w1.people}) == len(w1.people) == len({p.name.zh for p in w1.people})
    for k in w1.countries:
        assert k.capital.big and all(c.country is k for c in k.cities)
        assert k.neighbours and all(k in o.neighbours and o is not k for o in k.neighbours)
    for p in w1.people:
        assert p.friend is None or (p.friend.friend is p and p.friend is not p)
        assert 18 <= p.age <= 80 and p.home in w1.cities


@pytest.mark.parametrize("n,en,zh", [
    (0, "zero", "零"), (7, "seven", "七"), (10, "ten", "十"), (12, "twelve", "十二"), (20, "twenty", "二十"),
    (42, "forty-two", "四十二"), (100, "one hundred", "一百"), (105, "one hundred and five", "一百零五"),
    (110, "one hundred and ten", "一百一十"), (999, "nine hundred and ninety-nine", "九百九十九"),
    (1001, "one thousand and one", "一千零一"), (1200, "one thousand two hundred", "一千二百"),
    (10012, "ten thousand and twelve", "一万零一十二"), (120000, "one hundred and twenty thousand", "十二万"),
])
def test_number_words(n, en, zh):
    assert synth_world.en_number(n) == en
    assert synth_world.zh_number(n) == zh


def test_number_words_edges_and_helpers():
    assert synth_world.zh_number(2_700_000) == "二百七十万"
    assert synth_world.zh_count(2) == "两" and synth_world.zh_count(12) == "十二"
    with pytest.raises(ValueError):
        synth_world.en_number(1_000_000)
    with pytest.raises(ValueError):
        synth_world.zh_number(-1)
    assert synth_world.en_article("apple") == "an" and synth_world.en_article("pen") == "a"
    assert synth_world.en_join(["A"]) == "A" and synth_world.en_join(["A", "B", "C"]) == "A, B and C"
    assert synth_world.zh_join(["甲", "乙", "丙"]) == "甲、乙和丙"


def test_sentence_pairs_share_meaning():
    import random
    world = synth_world.build_world(0)
    rng = random.Random(0)
    p = world.people[0]
    facts = synth_sentences.person_facts(rng, world, p)
    assert p.name.en in facts[0].en and p.name.zh in facts[0].zh
    assert p.job.en in facts[0].en and p.job.zh in facts[0].zh
    for _ in range(200):
        pair, value = synth_sentences.arithmetic_fact(rng)
        assert pair.en.endswith((f" {value}.", f" {synth_world.en_number(value)}."))
        assert pair.zh.endswith((f"{value}。", f"{synth_world.zh_number(value)}。"))
        problem = synth_sentences.word_problem(rng, world)
        assert len(problem) == 3 and all(s.en.endswith(".") and s.zh.endswith("。") for s in problem)
    unit = synth_sentences.parallel_unit(rng, world)
    assert unit.en.count(".") == unit.zh.count("。")


def test_instructions_and_conversations_come_in_both_languages():
    import random
    world = synth_world.build_world(0)
    rng = random.Random(1)
    for _ in range(100):
        item = synth_instructions.instruction(rng, world)
        assert set(item) == {"en", "zh"} and all(len(item[k]) == 3 for k in item)
        conv = synth_instructions.conversation(rng, world)
        assert len(conv["en"]) == len(conv["zh"]) >= 2
    source = synth_code.module(rng, world)
    compile(source, "module", "exec")


@pytest.mark.skipif(not SHARED.is_dir(), reason="/work/shared/data (real data samples) is not on this machine")
def test_layouts_match_the_shared_real_data():
    compared = 0
    for rel in FILES:
        directory, multiturn = rel.split("/")[0], _kind(rel) == "multiturn"
        peers = [p for p in sorted((SHARED / directory).glob("*.jsonl")) if ("multiturn" in p.name) == multiturn]
        if not peers:
            continue                                   # no real code sample to compare against
        with peers[0].open(encoding="utf-8") as handle:
            real = json.loads(handle.readline())
        with (CORPORA / rel).open(encoding="utf-8") as handle:
            ours = json.loads(handle.readline())
        assert set(real) == set(ours), f"{rel} keys differ from {peers[0]}"
        if multiturn:
            assert set(real["conversations"][0]) == set(ours["conversations"][0])
        compared += 1
    assert compared == len(FILES) - 1                  # all but code
