"""``chatflow eval`` end to end on a tiny model and tiny files in all four layouts."""
from __future__ import annotations

import json

import pytest
from test_eval_benchmarks import write_ceval, write_cmmlu, write_gaokao, write_mmlu
from test_eval_models import tiny_llama_dir, torch_single_thread  # noqa: F401 (fixtures)

from chatflow_plugin.cli import main as chatflow_main
from chatflow_plugin.evaluation.evaluate import parse_tasks
from chatflow_plugin.errors import ChatflowError


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("benchmarks")
    write_mmlu(root / "mmlu", subjects=("algebra",), n_test=4)
    write_ceval(root / "ceval", subjects=("law",), n_val=4)
    write_cmmlu(root / "cmmlu", subjects=("arts",), n_test=4)
    write_gaokao(root / "gaokao", n=7)
    return root


def test_eval_writes_results_tables_and_predictions(tmp_path, tiny_llama_dir, data_dir, capsys):
    out = tmp_path / "res" / "results.json"
    argv = ["eval", "--model", str(tiny_llama_dir), "--model", str(tiny_llama_dir), "--model_name", "base",
            "--model_name", "chatflow", "--data_dir", str(data_dir), "--limit", "3", "--batch_size", "4",
            "--output", str(out), "--predictions", str(tmp_path / "pred.jsonl"), "--quiet", "--device", "cpu"]
    assert chatflow_main(argv) == 0
    captured = capsys.readouterr()
    assert ("| Model | MMLU | C-Eval | CMMLU | GAOKAO (3-shot letters) | GAOKAO (0-shot generation) |" in captured.out
            and "| chatflow |" in captured.out)
    # the one geography item is an exemplar of the few-shot reading; the zero-shot generation scores it
    assert "not scored: 2010-2022_Geography_MCQs (no questions left after the exemplars)" in captured.err
    assert "multi-token letters" in captured.err    # this tiny vocabulary spells " A" as "▁" + "A"
    results = json.loads(out.read_text(encoding="utf-8"))
    assert results["settings"]["num_fewshot"] == 3 and "log-probability" in results["settings"]["scoring"]
    assert results["settings"]["max_length"] == 2048   # the official codes' prompt length, by default
    base, chat = results["models"]["base"], results["models"]["chatflow"]
    assert set(base["benchmarks"]) == {"mmlu", "ceval", "cmmlu", "gaokao"}
    for name, r in base["benchmarks"].items():
        assert r["n_questions"] == 3 and r["acc"] == chat["benchmarks"][name]["acc"]   # same weights
        assert r["subjects"] and r["stats"]["questions"] == 3
        assert r["truncation"]["max_length"] == 2048 and r["truncation"]["context_length"] == 4096
    assert base["benchmarks"]["gaokao"]["n_skipped"] == 1
    assert base["letter_tokens"]["mmlu"][" A"] == ["▁", "<0x41>"]
    preds = [json.loads(line) for line in open(tmp_path / "pred.jsonl", encoding="utf-8")]
    letters = [p for p in preds if "loglikelihoods" in p]   # GAOKAO's generation protocol adds its own lines
    assert len(letters) == 2 * 4 * 3 and {p["model"] for p in preds} == {"base", "chatflow"}
    generated = [p for p in preds if "output" in p]
    assert len(generated) == 2 * (3 + 1) and {p["protocol"] for p in generated} == {"official"}   # biology + geography
    md = out.with_suffix(".md").read_text(encoding="utf-8")
    assert md.startswith("| Model | MMLU | C-Eval | CMMLU | GAOKAO (3-shot letters) |") and "### C-Eval" in md
    assert "| law | 3 |" in md


@pytest.mark.parametrize("extra,message", [
    (["--tasks", "mmlu,arc"], "unknown ['arc']"),
    (["--model_name", "a", "--model_name", "b"], "2 --model_name for 1 --model"),
    (["--limit", "-1"], "--limit must be >= 0"),
])
def test_bad_arguments_exit_2_with_a_message(tmp_path, tiny_llama_dir, data_dir, capsys, extra, message):
    argv = ["eval", "--model", str(tiny_llama_dir), "--data_dir", str(data_dir), "--quiet"] + extra
    assert chatflow_main(argv) == 2
    assert message in capsys.readouterr().err


def test_missing_inputs(tmp_path, data_dir, capsys):
    assert chatflow_main(["eval", "--data_dir", str(data_dir)]) == 2
    assert "--model is required" in capsys.readouterr().err
    assert chatflow_main(["eval", "--model", str(tmp_path), "--data_dir", str(data_dir), "--tasks", "mmlu"]) == 2
    assert "not a HuggingFace model directory" in capsys.readouterr().err
    assert chatflow_main(["eval", "--model", str(tmp_path), "--data_dir", str(tmp_path), "--tasks", "ceval"]) == 2
    assert "ceval: directory" in capsys.readouterr().err
    assert parse_tasks(" MMLU, ceval ,mmlu") == ["mmlu", "ceval"]
    with pytest.raises(ChatflowError):
        parse_tasks(",")


def test_eval_reports_language_fidelity(tmp_path, tiny_llama_dir, data_dir):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text('{"prompt": "Name a colour.", "lang": "en"}\n{"prompt": "说一个颜色。", "lang": "zh"}\n',
                       encoding="utf-8")
    out = tmp_path / "results.json"
    argv = ["eval", "--model", str(tiny_llama_dir), "--data_dir", str(data_dir), "--tasks", "mmlu",
            "--limit", "2", "--fidelity_prompts", str(prompts), "--output", str(out), "--quiet",
            "--device", "cpu"]
    assert chatflow_main(argv) == 0
    record = next(iter(json.loads(out.read_text(encoding="utf-8"))["models"].values()))
    fidelity = record["language_fidelity"]
    assert fidelity["n"] == 2 and 0.0 <= fidelity["fidelity"] <= 1.0
    assert set(fidelity["per_language"]) == {"en", "zh"}


@pytest.mark.parametrize("family", ["llama3", "qwen2", "mistral"])
def test_eval_and_fidelity_run_every_family(tmp_path, family, data_dir, byte_bpe_dir, qwen2_bpe_dir, spm_model):
    """LLaMA-3 (GQA, llama3 rope scaling, byte-level BPE with BOS), Qwen2 (biases, tied, no BOS) and Mistral
    (sliding window, sentencepiece): letters and generation protocols and language fidelity run, and each
    prompt starts with the BOS the model's own tokenizer puts there (none for Qwen2)."""
    from model_families import tiny_family_model
    from chatflow_plugin.tokenizer import load_tokenizer

    tokenizer = {"llama3": byte_bpe_dir, "qwen2": qwen2_bpe_dir, "mistral": spm_model}[family]
    model = tiny_family_model(tmp_path / family, family, tokenizer)
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text('{"prompt": "Name a colour.", "lang": "en"}\n{"prompt": "说一个颜色。", "lang": "zh"}\n',
                       encoding="utf-8")
    out = tmp_path / "results.json"
    argv = ["eval", "--model", str(model), "--data_dir", str(data_dir), "--tasks", "mmlu,cmmlu,gaokao", "--limit", "2",
            "--fidelity_prompts", str(prompts), "--output", str(out), "--predictions", str(tmp_path / "p.jsonl"),
            "--quiet", "--device", "cpu"]
    assert chatflow_main(argv) == 0
    record = next(iter(json.loads(out.read_text(encoding="utf-8"))["models"].values()))
    assert set(record["benchmarks"]) == {"mmlu", "cmmlu", "gaokao"}
    assert all(r["n_questions"] == 2 for r in record["benchmarks"].values())
    assert record["language_fidelity"]["n"] == 2
    bos = load_tokenizer(model).bos_id
    assert (bos is None) == (family == "qwen2")
