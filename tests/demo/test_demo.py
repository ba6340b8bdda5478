"""The demo: held-out split before tokenization, fair baselines, the end-to-end run, the report."""
from __future__ import annotations

import csv
import json
import math
import random
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("transformers")

from chatflow_plugin.cli import main as chatflow_main  # noqa: E402
from chatflow_plugin.demo.pipeline import run_mixtures  # noqa: E402
from chatflow_plugin.demo.split import (GROUP_DIRS, SplitBudget, iter_texts, prepare_data, read_group,  # noqa: E402
                                       split_records, stdlib_code_records)
from chatflow_plugin.data.split import SplitSpec, document_hashes  # noqa: E402
from chatflow_plugin.errors import ChatflowError, DataError  # noqa: E402
from chatflow_plugin.demo.report import paired, write_report  # noqa: E402
from chatflow_plugin.data.mixture import parse_mixture  # noqa: E402
from chatflow_plugin.data.sampler import realized_group_counts  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
EN = ("the river runs past the old school while a teacher reads books about music history and science "
      "people walk to the city market every day to buy water bread and fruit").split()
ZH = "我们的老师在学校里读一本关于音乐和历史的书今天天气很好城市河流山水人们每天去市场买水果面包"


def _jsonl(path: Path, records: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")


def make_data_dir(root: Path, n: int = 60, with_code: bool = False, seed: int = 0) -> Path:
    """A miniature of the shared data layout: five groups (no code unless asked)."""
    rng = random.Random(seed)

    def en(k):
        return " ".join(rng.choice(EN) for _ in range(k)) + "."

    def zh(k):
        return "".join(rng.choice(ZH) for _ in range(k)) + "。"

    _jsonl(root / "en_corpus" / "a.jsonl", [{"text": " ".join(en(12) for _ in range(6))} for _ in range(n)])
    _jsonl(root / "zh_corpus" / "a.jsonl", [{"text": "".join(zh(20) for _ in range(4))} for _ in range(n)])
    _jsonl(root / "parallel" / "a.jsonl", [{"en": en(8), "zh": zh(10)} for _ in range(n)])
    _jsonl(root / "en_inst" / "a.jsonl", [{"instruction": en(6), "input": "", "output": en(10)} for _ in range(n)])
    _jsonl(root / "zh_inst" / "a.jsonl", [{"conversations": [{"from": "human", "value": zh(8)},
                                                             {"from": "gpt", "value": zh(16)}]} for _ in range(n)])
    if with_code:
        _jsonl(root / "code" / "a.jsonl", [{"text": f"def f{i}(x):\n    return x + {i}\n"} for i in range(n)])
    return root


BUDGET = SplitBudget(heldout_chars=2_000, heldout_max_fraction=0.2, train_chars=None, code_bytes=60_000)


# --- data split ----------------------------------------------------------------------------------

def test_split_is_disjoint_seeded_budgeted_and_the_preprocess_rule():
    lines = [json.dumps({"text": f"doc {i} " + "x" * 100}) for i in range(400)]
    parts = split_records(lines, "en_corpus", BUDGET, seed=1)
    train, held = parts["train"], parts["heldout"]
    assert not set(train) & set(held)
    assert len(train) + len(held) == 400
    chars = sum(len(json.loads(line)["text"]) for line in lines)
    fraction = BUDGET.heldout_chars / chars                      # the budget as a fraction of the records
    assert 0.4 * fraction * 400 <= len(held) <= 2.0 * fraction * 400
    assert split_records(lines, "en_corpus", BUDGET, seed=1) == parts
    assert split_records(lines, "en_corpus", BUDGET, seed=2)["heldout"] != held          # the seed decides
    # the same rule as `chatflow preprocess --split`: heldout is the first stretch of the hash range ...
    texts = [json.loads(line)["text"] for line in lines]
    hashes = document_hashes(texts)
    h = min(0.2, fraction)
    two = SplitSpec((("heldout", h), ("train", 1 - h)), 1).assign(hashes)
    assert [line for line, p in zip(lines, two) if p == 0] == held
    # ... and one split of three parts, valid:h/2,test:h/2,train: its halves, in input order
    three = SplitSpec((("valid", h / 2), ("test", h / 2), ("train", 1 - h)), 1).assign(hashes)
    for index, name in enumerate(("valid", "test", "train")):
        assert [line for line, p in zip(lines, three) if p == index] == parts[name]
    assert parts["valid"] and parts["test"] and sorted(parts["valid"] + parts["test"]) == sorted(held)
    capped = split_records(lines, "g", SplitBudget(2_000, 0.5, train_chars=5_000, code_bytes=1), seed=0)["train"]
    assert 0 < sum(len(json.loads(line)["text"]) for line in capped) < 2 * 5_000
    with pytest.raises(ChatflowError, match="at least 3"):
        split_records(lines[:2], "g", BUDGET)
    for n in (3, 4, 7):      # too small for its fraction: two held out, one to validate on, one to test on
        tiny = split_records(lines[:n], "g", SplitBudget(1, 0.001, None, 1))
        assert len(tiny["valid"]) == len(tiny["test"]) == 1 and len(tiny["train"]) == n - 2
    copies = [lines[0]] * 5 + [lines[1]] * 3 + lines[2:5]     # ... each with every copy of it (never trained on)
    tiny = split_records(copies, "g", SplitBudget(1, 0.001, None, 1))
    assert not set(tiny["train"]) & set(tiny["valid"] + tiny["test"]) and len(tiny["train"] + tiny["valid"] + tiny["test"]) == 11
    assert len(set(tiny["valid"])) == len(set(tiny["test"])) == 1 and not set(tiny["valid"]) & set(tiny["test"])


def test_prepare_data_writes_splits_and_builds_code_from_the_stdlib(tmp_path):
    data = make_data_dir(tmp_path / "in")
    stats = prepare_data(data, tmp_path / "out", BUDGET, seed=0)
    assert set(stats) == set(GROUP_DIRS)
    assert "standard library" in stats["code"]["origin"]
    for group in GROUP_DIRS:
        parts = {name: (tmp_path / "out" / name / group / "data.jsonl").read_text(encoding="utf-8").splitlines()
                 for name in ("train", "heldout", "valid", "test")}
        assert parts["train"] and parts["valid"] and parts["test"] and not set(parts["train"]) & set(parts["heldout"])
        assert sorted(parts["valid"] + parts["test"]) == sorted(parts["heldout"])
        assert len(parts["train"]) == stats[group]["train_documents"]
        assert len(parts["test"]) == stats[group]["test_documents"]
    code = [json.loads(line)["text"] for line in stdlib_code_records(30_000)]
    assert code and all(text.startswith("# ") for text in code)
    texts = list(iter_texts(tmp_path / "out" / "train" / "zh_inst" / "data.jsonl"))
    assert texts and all(isinstance(t, str) for t in texts)
    with pytest.raises(ChatflowError, match="already exists"):
        prepare_data(data, tmp_path / "out", BUDGET)


def test_prepare_data_errors_name_the_problem(tmp_path):
    with pytest.raises(ChatflowError, match="not found"):
        prepare_data(tmp_path / "nowhere", tmp_path / "o1", BUDGET)
    data = make_data_dir(tmp_path / "in", n=10)
    (data / "zh_inst" / "a.jsonl").unlink()
    (data / "zh_inst" / "b.jsonl").write_text('{"instruction": "x", "output": "y"}\n{broken\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"b\.jsonl:2"):
        read_group(data / "zh_inst")
    import shutil
    shutil.rmtree(data / "parallel")
    with pytest.raises(ChatflowError, match="missing group folder parallel"):
        prepare_data(data, tmp_path / "o2", BUDGET)
    assert not (tmp_path / "o2").exists()


# --- fair baselines ------------------------------------------------------------------------------

def test_static_and_two_stage_runs_get_the_dynamic_runs_samples_per_group(tmp_path):
    n = 4000
    mixtures = run_mixtures(n, 0.6 * n, 128, tmp_path)
    dynamic = parse_mixture(mixtures["dynamic"]).schedule()
    static = parse_mixture(mixtures["static"]).schedule()
    expected = dynamic.expected_counts(float(n))
    assert np.allclose(static.expected_counts(float(n)), expected)          # same expected samples per group
    assert not np.allclose(static.probabilities(0.0), dynamic.probabilities(0.0))   # different order
    got_dynamic, got_static = realized_group_counts(dynamic, n), realized_group_counts(static, n)
    assert np.abs(got_dynamic - got_static).max() <= 1
    # two stages: pre-training groups then instruction groups; lengths by the instruction share
    n2 = round(n * mixtures["instruction_share"])
    stage1 = realized_group_counts(parse_mixture(mixtures["stage1"]).schedule(), n - n2)
    stage2 = realized_group_counts(parse_mixture(mixtures["stage2"]).schedule(), n2)
    names = parse_mixture(mixtures["dynamic"]).group_names
    inst = [names.index("en_inst"), names.index("zh_inst")]
    assert stage1[inst].sum() == 0 and stage2.sum() == stage2[inst].sum()
    assert np.abs(stage1 + stage2 - got_static).max() <= 2
    # three phases (piecewise): no instructions in the warm-up, more at the end, the same samples per group
    piecewise = parse_mixture(mixtures["piecewise"]).schedule()
    assert np.abs(realized_group_counts(piecewise, n) - got_dynamic).max() <= 1
    assert piecewise.probabilities(0.0)[inst].sum() == 0
    assert piecewise.probabilities(float(n))[inst].sum() > 1.5 * dynamic.probabilities(float(n))[inst].sum()
    assert len(np.unique(piecewise.knots)) == 5
    # adaptive: the dynamic schedule with a policy
    adaptive = parse_mixture(mixtures["adaptive"])
    assert adaptive.adaptive.signal == "loss" and adaptive.adaptive.every_samples == n // 10
    assert np.allclose(adaptive.schedule().expected_counts(float(n)), expected)


# --- report --------------------------------------------------------------------------------------

def _fake_run(folder: Path, losses: dict[str, list[float]], tokens_per_eval: int = 1000) -> Path:
    folder.mkdir(parents=True)
    records = []
    steps = len(next(iter(losses.values())))
    for i in range(steps):
        records.append({"kind": "heldout", "step": i * 10, "samples": i * 10, "tokens": i * tokens_per_eval,
                        **{f"heldout_{g}": v[i] for g, v in losses.items()}})
        if i:
            records.append({"kind": "train", "step": i * 10, "samples": i * 10, "tokens": i * tokens_per_eval,
                            "loss": 5.0 - i, "learning_rate": 1e-3})
    (folder / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (folder / "train_summary.json").write_text(json.dumps({"group_samples": {g: 10 for g in losses}}))
    return folder


def test_report_numbers_and_paired_differences(tmp_path):
    groups = ("en_corpus", "zh_corpus", "en_inst", "zh_inst")
    runs = {}
    for seed, noise in enumerate((0.0, 0.01, -0.01)):
        for kind, offset in (("dynamic", 0.0), ("static", 0.2), ("two_stage", 0.0)):
            losses = {g: [6.0, 5.0, 4.0 + offset + (noise if kind == "two_stage" else 0.0)] for g in groups}
            runs[f"{kind}_s{seed}"] = _fake_run(tmp_path / "runs" / f"{kind}_s{seed}", losses)
    report = write_report(tmp_path / "report", runs, {"profile": "test"})
    text = report.read_text(encoding="utf-8")
    with open(tmp_path / "report" / "final.csv", newline="") as handle:
        final = {(r["kind"], r["group"]): r for r in csv.DictReader(handle)}
    assert float(final[("static", "en_corpus")]["mean"]) == pytest.approx(4.2)
    assert float(final[("dynamic", "zh_inst")]["sd"]) == pytest.approx(0.0)
    assert float(final[("two_stage", "en_inst")]["sd"]) == pytest.approx(0.01)
    # static is 0.2 worse in every seed: beyond noise; two-stage differs by +-0.01 around 0: within noise
    assert "| en_corpus | static | +0.000" in text
    static_row = next(line for line in text.splitlines() if line.startswith("| en_corpus | static |"))
    two_row = next(line for line in text.splitlines() if line.startswith("| en_corpus | two_stage |"))
    assert "+0.200" in static_row and "dynamic lower, beyond seed noise" in static_row
    assert "within seed noise" in two_row
    for name in ("heldout.csv", "training.csv", "heldout_per_group.png", "heldout_per_language.png",
                 "training_loss.png"):
        assert (tmp_path / "report" / name).stat().st_size > 0
    mean, sd, n = paired({0: {0: 1.0, 10: 0.5}}, {0: {0: 1.0, 10: 0.7}})
    assert (mean, n) == (pytest.approx(0.2), 1) and math.isnan(sd)
    with pytest.raises(ChatflowError, match="kind>_s<seed"):
        write_report(tmp_path / "r2", {"oops": tmp_path})


# --- end to end ----------------------------------------------------------------------------------

def test_demo_quick_on_the_bundled_corpora(tmp_path, capsys, monkeypatch):
    """The README's command as a user runs it: `chatflow demo --quick` with a relative output directory, from a
    working directory that is not the checkout; every stage checked; a rerun reuses them."""
    corpora = ROOT / "corpora"
    if not all((corpora / g).is_dir() for g in GROUP_DIRS if g != "code"):
        pytest.skip("the bundled corpora/ are not in this checkout")
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "runs" / "demo"
    argv = ["--quick", "--output_dir", "runs/demo"]
    assert chatflow_main(["demo", *argv]) == 0
    # paths written into generated files are relative to that file (inside the output tree) or absolute
    from chatflow_plugin.data.mixture import load_mixture
    dynamic = json.loads((out / "mixtures" / "dynamic.json").read_text(encoding="utf-8"))
    assert dynamic["data_root"] == "../data/train"
    monkeypatch.chdir(ROOT)   # the same file loads the same folder from anywhere
    assert load_mixture(out / "mixtures" / "dynamic.json").data_root == out / "data" / "train"
    monkeypatch.chdir(tmp_path)
    printed = capsys.readouterr().out
    result = json.loads(printed[printed.index("\n{\n") + 1:])
    assert set(result["runs"]) == {"dynamic_s0", "static_s0", "two_stage_s0", "piecewise_s0", "adaptive_s0"}
    with open(out / "report" / "final.csv", newline="") as handle:
        final = list(csv.DictReader(handle))
    assert {r["kind"] for r in final} == {"dynamic", "static", "two_stage", "piecewise", "adaptive"}
    assert {r["group"] for r in final} == set(GROUP_DIRS)
    assert all(math.isfinite(float(r["mean"])) for r in final)
    report = (out / "report" / "report.md").read_text(encoding="utf-8")
    assert "| zh_corpus |" in report and "can and cannot show" in report
    assert "**piecewise** vs dynamic" in report and "**adaptive** vs dynamic" in report
    assert "adaptive_s0: 3 update(s) during the run; the last factors" in report
    summaries = {k: json.loads((out / "runs" / f"{k}_s0" / "train_summary.json").read_text())["group_samples"]
                 for k in ("dynamic", "piecewise", "adaptive")}
    assert max(abs(summaries["piecewise"][g] - summaries["dynamic"][g]) for g in summaries["dynamic"]) <= 1
    assert summaries["adaptive"] != summaries["dynamic"]
    context = json.loads((out / "report" / "context.json").read_text(encoding="utf-8"))
    assert context["tokenizer"]["expanded_pieces"] > context["tokenizer"]["english_pieces"]
    added = (out / "tokenizer" / "added_pieces.txt").read_text(encoding="utf-8").split()
    assert added and all(len(p) == 1 for p in added)
    # no held-out document is in the training split
    for group in GROUP_DIRS:
        train = set((out / "data" / "train" / group / "data.jsonl").read_text(encoding="utf-8").splitlines())
        held = set((out / "data" / "heldout" / group / "data.jsonl").read_text(encoding="utf-8").splitlines())
        assert held and not train & held
    # every run is scored on the same held-out windows: at step 0 (the expanded foundation) all agree
    with open(out / "report" / "heldout.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    at_zero: dict = {}
    for r in rows:
        if r["step"] == "0":
            at_zero.setdefault(r["group"], set()).add(round(float(r["loss"]), 5))
    assert set(at_zero) == set(GROUP_DIRS) and all(len(v) == 1 for v in at_zero.values())
    # the runs learn Chinese (new rows) and the English foundation had learned English
    zh = {r["kind"]: float(r["mean"]) for r in final if r["group"] == "zh_corpus"}
    assert all(v < next(iter(at_zero["zh_corpus"])) for v in zh.values())
    foundation = [json.loads(line) for line in (out / "foundation" / "log.jsonl").read_text().splitlines()]
    held_en = [r["heldout_en_corpus"] for r in foundation if r["kind"] == "heldout"]
    assert held_en[-1] < held_en[0] - 0.5
    # the released model: transformers loads it offline; tokenizer ids equal sentencepiece's
    generations = json.loads((out / "generations.json").read_text(encoding="utf-8"))
    assert set(generations) == {"zh", "en"} and generations["zh"]["prompt"].startswith("### Instruction:\n")
    import sentencepiece as spm
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(out / "release", local_files_only=True)
    sp = spm.SentencePieceProcessor(model_file=str(out / "tokenizer" / "expanded.model"))
    for text in ("### Instruction:\n长城在哪里？### Response: ", "The teacher reads music books.\n第二行"):
        assert tok(text)["input_ids"] == [1] + sp.encode(text)
    # rerun: every stage reused, same numbers
    before = (out / "report" / "final.csv").read_text()
    assert chatflow_main(["demo", *argv]) == 0
    assert (out / "report" / "final.csv").read_text() == before


def test_figure_plots_from_chatflow_runs_host_logs_and_eval_results(tmp_path, capsys):
    from chatflow_plugin.evaluation.figures import training_curve

    run = _fake_run(tmp_path / "runs" / "dynamic_s0", {"en_corpus": [6.0, 5.0, 4.0]})
    host_log = tmp_path / "host.log"
    host_log.write_text("noise\n|       10/     100 steps|  1234.00 tokens/s| loss    5.50| group loss: en 5.1| p: en 1.000\n"
                        "|       20/     100 steps|  1234.00 tokens/s| loss    4.25| p: en 1.000\n", encoding="utf-8")
    assert training_curve(host_log, tokens_per_step=100) == [(1000, 5.5), (2000, 4.25)]
    assert training_curve(run) == [(1000, 4.0), (2000, 3.0)]
    with pytest.raises(ChatflowError, match="tokens_per_step"):
        training_curve(host_log)
    out = tmp_path / "fig1.png"
    assert chatflow_main(["figure1", "--run", f"dynamic={run}", "--run", f"host={host_log}",
                           "--tokens_per_step", "100", "--output", str(out)]) == 0
    assert out.stat().st_size > 0 and "host,2000,4.25" in out.with_suffix(".csv").read_text()
    results = tmp_path / "results.json"
    results.write_text(json.dumps({"settings": {"num_fewshot": 3}, "models": {
        "t1000": {"benchmarks": {"mmlu": {"acc": 0.25}, "cmmlu": {"acc": 0.26}}},
        "t2000": {"benchmarks": {"mmlu": {"acc": 0.27}, "cmmlu": {"acc": 0.30}}}}}))
    out2 = tmp_path / "fig2.png"
    assert chatflow_main(["figure2", "--results", str(results), "--tokens", "t1000=1000", "--tokens", "t2000=2000",
                           "--output", str(out2)]) == 0
    assert "t2000,2000,cmmlu,0.3" in out2.with_suffix(".csv").read_text()
    assert chatflow_main(["figure2", "--results", str(results), "--tokens", "nope=1", "--output", str(out2)]) == 2
    assert "no model named" in capsys.readouterr().err
    for kind in ("static", "two_stage"):
        _fake_run(tmp_path / "runs" / f"{kind}_s0", {"en_corpus": [6.0, 5.5, 4.5]})
    assert chatflow_main(["demo-report", "--runs_dir", str(tmp_path / "runs"), "--output_dir", str(tmp_path / "rep")]) == 0
    assert "| en_corpus | static |" in (tmp_path / "rep" / "report.md").read_text()
