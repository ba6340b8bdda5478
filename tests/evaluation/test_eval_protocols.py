"""Protocols: the registry as the one place, pandas cell texts, letter fallbacks, fitting, truncation, generation."""
from __future__ import annotations

import ast
import io
import json
from pathlib import Path

import pytest
import torch
from test_eval_benchmarks import write_ceval, write_cmmlu, write_gaokao, write_mmlu
from test_eval_models import letters_llama_dir, tiny_llama_dir, torch_single_thread  # noqa: F401 (fixtures)

from chatflow_plugin.cli import main as chatflow_main
from chatflow_plugin.errors import ChatflowError
from chatflow_plugin.evaluation import registry
from chatflow_plugin.evaluation.benchmarks import pandas_cell_texts
from chatflow_plugin.evaluation.generation import generate_answers
from chatflow_plugin.evaluation.prompts import PromptPlanner
from chatflow_plugin.evaluation.protocols import PROTOCOL_SETS, letter_targets
from chatflow_plugin.evaluation.registry import BENCHMARKS, load_benchmark, protocols_of
from chatflow_plugin.evaluation.run import EvalSettings, evaluate_model
from chatflow_plugin.evaluation.scoring import load_model

PACKAGE = Path(registry.__file__).parent


@pytest.fixture(scope="module")
def tiny(tiny_llama_dir):
    return load_model(str(tiny_llama_dir), device="cpu")


def test_a_benchmark_is_one_registry_entry():
    """No module but the registry lists benchmark names or display names (adding one = one entry)."""
    names = set(BENCHMARKS) | {spec.display for spec in BENCHMARKS.values()}
    for path in PACKAGE.glob("*.py"):
        if path.name == "registry.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.List, ast.Tuple, ast.Set, ast.Dict)):
                items = node.keys if isinstance(node, ast.Dict) else node.elts
                listed = {i.value for i in items if isinstance(i, ast.Constant) and i.value in names}
                assert not listed, f"{path.name}:{node.lineno} lists {listed}"
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                assert node.value not in {spec.display for spec in BENCHMARKS.values()}, f"{path.name}:{node.lineno}"
    for name, spec in BENCHMARKS.items():
        assert set(spec.protocols) == set(PROTOCOL_SETS) and set(spec.paper) == set(registry.PAPER_MODELS)
        assert all(p.reference and p.summary and p.average in ("micro", "macro", "points")
                   for ps in spec.protocols.values() for p in ps)
    official = {n: protocols_of(n)[0] for n in BENCHMARKS}
    assert {n: p.average for n, p in official.items()} == {"mmlu": "micro", "ceval": "macro", "cmmlu": "macro",
                                                           "gaokao": "points"}
    assert [p.name for p in protocols_of("gaokao")] == ["paper", "official"]
    assert protocols_of("gaokao")[1].kind == "generation"
    assert {n: protocols_of(n, "lm-eval")[0].average for n in ("mmlu", "ceval", "cmmlu")} == dict.fromkeys(
        ("mmlu", "ceval", "cmmlu"), "micro")   # the stock groups' weight_by_size: true


def test_pandas_cell_texts_match_pandas():
    pd = pytest.importorskip("pandas")
    columns = [["4", "0.5", "x"], ["4", "0.5", "2"], ["007", "+5", "-0"], ["5", "", "6"], ["1e3", "2"],
               ["True", "false"], ["True", ""], ["None", "x"], ["NA", "1"], ["n/a", "b"], ["1,000", "2"],
               [" 5", "6 "], ["inf", "1"], ["123456789012345678901234", "1"], ["1_000", "2"], ["", ""],
               ["abc", " padded "], ["0x10", "1"], ["1.50", "2"], ["nan", "NaN", "3"]]
    for column in columns:
        text = "c\n" + "".join(f'"{v}"\n' for v in column)
        frame = pd.read_csv(io.StringIO(text))
        assert pandas_cell_texts(column) == [str(v) for v in frame["c"]], column


def test_letter_rules_and_their_fallback(tiny, letters_llama_dir):
    _, byte_tok = tiny   # a byte-fallback vocabulary without letter pieces
    _, tok = load_model(str(letters_llama_dir), device="cpu")
    ceval, cmmlu, mmlu = (protocols_of(n)[0] for n in ("ceval", "cmmlu", "mmlu"))
    ids, note = letter_targets(ceval, tok)
    assert tok.convert_ids_to_tokens(ids) == ["▁A", "▁B", "▁C", "▁D"] and not note
    ids, note = letter_targets(cmmlu, tok)
    assert tok.convert_ids_to_tokens(ids) == ["A", "B", "C", "D"] and not note
    assert letter_targets(mmlu, tok) == ([" A", " B", " C", " D"], "")
    targets, note = letter_targets(ceval, byte_tok)   # encode("A")[0] is "▁" for every letter here
    assert targets == ["A", "B", "C", "D"] and "['▁', '▁', '▁', '▁']" in note and "instead" in note
    targets, note = letter_targets(cmmlu, byte_tok)   # no "A" piece: the unknown token for every letter
    assert targets == ["A", "B", "C", "D"] and "not four distinct known tokens" in note


def test_drop_last_keeps_a_prefix_of_the_exemplars_and_left_cut_keeps_all(tmp_path, letters_llama_dir):
    _, tok = load_model(str(letters_llama_dir), device="cpu")
    bench = load_benchmark("ceval", write_ceval(tmp_path / "ceval"), 5)
    s, q = bench.subjects[0], bench.subjects[0].questions[0]
    official, lm_eval = protocols_of("ceval")[0], protocols_of("ceval", "lm-eval")[0]
    full = PromptPlanner(official.format, "drop_last", tok, 10_000).plan(s, q, 5)
    assert full.shots == 5 and not full.truncated
    exact = 1 + len(tok(full.context, add_special_tokens=False)["input_ids"])   # BOS + the prompt
    assert full.tokens >= exact   # far below the limit the planner only estimates (the parts' sum)
    limit = exact - 1   # one token too short for five exemplars
    plan = PromptPlanner(official.format, "drop_last", tok, limit).plan(s, q, 5)
    assert plan.shots == 4 and plan.context == official.format.context(s, q, 4) and not plan.cut and plan.truncated
    assert plan.tokens >= 1 + len(tok(plan.context, add_special_tokens=False)["input_ids"])
    cut = PromptPlanner(lm_eval.format, "left_cut", tok, 300).plan(s, q, 5)
    assert cut.shots == 5 and cut.cut and cut.truncated
    tiny_limit = PromptPlanner(official.format, "drop_last", tok, 20).plan(s, q, 5)
    assert tiny_limit.shots == 0 and tiny_limit.cut   # even zero-shot does not fit: cut from the left, reported


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("benchmarks")
    write_mmlu(root / "mmlu", subjects=("algebra",), n_test=4)
    write_ceval(root / "ceval", subjects=("law", "logic"), n_val=4)
    write_cmmlu(root / "cmmlu", subjects=("arts",), n_test=4)
    write_gaokao(root / "gaokao", n=6)
    return root


def test_results_json_fields_and_truncation_warning(tmp_path, letters_llama_dir, data_dir, capsys):
    out = tmp_path / "r" / "results.json"
    argv = ["eval", "--model", str(letters_llama_dir), "--data_dir", str(data_dir), "--max_length", "160",
            "--max_new_tokens", "8", "--output", str(out), "--quiet", "--device", "cpu", "--bootstrap", "200"]
    assert chatflow_main(argv) == 0
    err = capsys.readouterr().err
    assert "prompts do not fit the prompt budget of 160 tokens with 3 exemplars" in err
    results = json.loads(out.read_text(encoding="utf-8"))
    assert results["settings"]["protocol"] == "official"
    record = next(iter(results["models"].values()))
    for name, r in record["benchmarks"].items():
        for key in ("acc", "acc_stderr", "n", "chance", "average", "truncated_prompts", "protocol", "reference"):
            assert key in r, (name, key)
        assert r["chance"] == pytest.approx(0.25) and 0 <= r["acc"] <= 1 and r["acc_stderr"] >= 0
        assert r["truncated_prompts"] > 0 and r["truncation"]["max_length"] == 160
        assert r["truncation"]["context_length"] == 4096
    assert record["benchmarks"]["ceval"]["average"] == "macro" and record["benchmarks"]["cmmlu"]["average"] == "macro"
    assert record["benchmarks"]["ceval"]["letter_tokens"] == {c: [f"▁{c}"] for c in "ABCD"}
    generation = record["benchmarks"]["gaokao"]["other_protocols"]["official"]
    assert generation["kind"] == "generation" and generation["n"] == 6 + 1
    md = out.with_suffix(".md").read_text(encoding="utf-8")
    header = md.splitlines()[0]
    assert header == "| Model | MMLU | C-Eval | CMMLU | GAOKAO (3-shot letters) | GAOKAO (0-shot generation) |"
    row = md.splitlines()[2]
    assert row.count("±") == 5 and row.count("†") >= 4
    assert "| *paper: ChatFlow* | 46.8 | 43.1 | 40.2 | 40.7 | – |" in md and "| *chance* | 25.0 |" in md
    assert "prompts do not fit" not in md and "context length 160 tokens" in md and "exemplars dropped" in md
    assert "The GAOKAO column of Table 2 is the `paper` protocol" in md


def test_on_truncation_fail_stops_before_scoring(tmp_path, letters_llama_dir, data_dir, capsys):
    out = tmp_path / "results.json"
    argv = ["eval", "--model", str(letters_llama_dir), "--data_dir", str(data_dir), "--tasks", "ceval",
            "--max_length", "160", "--on_truncation", "fail", "--output", str(out), "--quiet", "--device", "cpu"]
    assert chatflow_main(argv) == 2
    err = capsys.readouterr().err
    assert "chatflow eval: error:" in err and "do not fit the prompt budget of 160 tokens" in err
    assert not out.exists()
    with pytest.raises(ChatflowError, match="on_truncation"):
        EvalSettings(on_truncation="ignore")


def test_lm_eval_protocol_and_paired_test_with_two_models(tmp_path, letters_llama_dir, tiny_llama_dir, data_dir):
    out = tmp_path / "results.json"
    argv = ["eval", "--model", str(letters_llama_dir), "--model", str(tiny_llama_dir), "--model_name", "a",
            "--model_name", "b", "--data_dir", str(data_dir), "--tasks", "mmlu,ceval,gaokao", "--protocol", "lm-eval",
            "--output", str(out), "--quiet", "--device", "cpu", "--bootstrap", "200"]
    assert chatflow_main(argv) == 0
    results = json.loads(out.read_text(encoding="utf-8"))
    a = results["models"]["a"]["benchmarks"]
    assert {r["protocol"] for r in a.values()} == {"lm-eval", "paper"} and "other_protocols" not in a["gaokao"]
    assert a["ceval"]["average"] == "micro" and a["ceval"]["truncated_prompts"] == 0
    paired = results["paired"]
    assert [(p["benchmark"], p["a"], p["b"]) for p in paired] == [("mmlu", "a", "b"), ("ceval", "a", "b"),
                                                                  ("gaokao", "a", "b")]
    for p in paired:
        assert p["diff"] == pytest.approx(a[p["benchmark"]]["acc"] - results["models"]["b"]["benchmarks"][p["benchmark"]]["acc"])
        assert 0 <= p["p_bootstrap"] <= 1 and "mcnemar" in p
    md = out.with_suffix(".md").read_text(encoding="utf-8")
    assert "Paired differences" in md and "| MMLU | a | b |" in md and "protocol set `lm-eval`" in md


def test_generation_stops_at_the_answer_and_respects_the_context(tiny):
    model, tok = tiny
    prompts = [("请你做一道选择题\n题目如下：1+1=?\n", False), ("短\n", False)]
    outs = generate_answers(model, tok, prompts, [1, 2], max_new_tokens=12, max_length=4096, stop_text="<eoa>")
    assert all(o.new_tokens <= 12 and o.budget == 12 and not o.cut for o in outs)
    long = [("很长的题目" * 200 + "\n", False)]
    out = generate_answers(model, tok, long, [1], max_new_tokens=100, max_length=128, stop_text="<eoa>")[0]
    assert out.cut and out.prompt_tokens == 128 - 64 and out.budget == 64 and out.new_tokens <= 64
    small = generate_answers(model, tok, long + [("短\n", False)], [1, 1], max_new_tokens=100, max_length=48,
                             stop_text="<eoa>")   # a short context keeps half for the prompt
    assert (small[0].cut, small[0].prompt_tokens, small[0].budget) == (True, 24, 24)
    assert not small[1].cut and small[1].budget == 48 - small[1].prompt_tokens
    with pytest.raises(ChatflowError, match="max_new_tokens >= 1"):
        generate_answers(model, tok, long, [1], max_new_tokens=0, max_length=48)


def test_generation_stop_text_ends_the_answer(tiny):
    """A model that writes '<eoa>' at once stops there (the stopping criterion), not at the budget."""
    model, tok = tiny
    eoa = tok("【答案】 A <eoa>", add_special_tokens=False)["input_ids"]

    class Writes:
        def __init__(self):
            self.device = torch.device("cpu")

        def generate(self, input_ids, attention_mask, generation_config, stopping_criteria):
            ids = input_ids
            for token in eoa + eoa:   # would write two answers; the criterion stops after the first
                ids = torch.cat([ids, torch.full((ids.shape[0], 1), token)], dim=1)
                if bool(stopping_criteria(ids, None).all()):
                    break
            return ids

    out = generate_answers(Writes(), tok, [("题\n", False)], [1], max_new_tokens=50, max_length=4096,
                           stop_text="<eoa>")[0]
    assert out.stopped == "stop_text" and out.text.endswith("<eoa>") and out.new_tokens == len(eoa)


def test_evaluate_model_returns_outcomes_for_paired_tests(tmp_path, tiny):
    model, tok = tiny
    bench = load_benchmark("mmlu", write_mmlu(tmp_path / "mmlu", n_test=5), 1)
    result = evaluate_model(model, tok, [bench], EvalSettings(num_fewshot=1, progress=False, bootstrap=100))
    outcomes = result["outcomes"][("mmlu", "official")]
    assert len(outcomes.ids) == 10 and result["context_length"] == 4096
    assert outcomes.headline() == pytest.approx(result["benchmarks"]["mmlu"]["acc"])
