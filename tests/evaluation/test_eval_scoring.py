"""Letter scoring: exact log-likelihoods vs an unbatched reference, oracle = 100 %, uniform = chance."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from test_eval_benchmarks import write_ceval, write_gaokao, write_mmlu
from test_eval_models import (OracleLM, hf_tokenizer_dir, tiny_llama_dir, torch_single_thread,  # noqa: F401
                              write_tiny_llama)

from chatflow_plugin.errors import ChatflowError
from chatflow_plugin.evaluation.benchmarks import LETTERS
from chatflow_plugin.evaluation.protocols import letter_targets
from chatflow_plugin.evaluation.registry import build_prompt, load_benchmark, protocols_of, shared_prefix
from chatflow_plugin.evaluation.run import EvalSettings, evaluate_benchmark, evaluate_model, letter_tokens
from chatflow_plugin.evaluation.scoring import (PREFIX_CACHE_MODES, ForwardCost, LetterScorer, load_model, predictions,
                                                resolve_device, split_continuation)


@pytest.fixture(scope="module")
def tiny(tiny_llama_dir):
    return load_model(str(tiny_llama_dir), device="cpu")


def _requests(bench, k):
    return [build_prompt(bench.name, s, q, k) for s in bench.subjects for q in s.questions]


def _reference(model, tokenizer, requests):
    """One unpadded forward per (context, continuation), full-vocabulary log-softmax, summed."""
    out = np.zeros((len(requests), len(requests[0][1])))
    with torch.no_grad():
        for i, (context, conts) in enumerate(requests):
            for j, cont in enumerate(conts):
                ctx, ids = split_continuation(tokenizer, context, cont, True)
                logits = model(input_ids=torch.tensor([ctx + ids])).logits[0].float().log_softmax(-1)
                out[i, j] = sum(float(logits[len(ctx) - 1 + t, tok]) for t, tok in enumerate(ids))
    return out


def test_split_continuation_follows_lm_eval_and_handles_merges(tiny):
    _, tok = tiny
    ctx, cont = split_continuation(tok, "Answer: ", "A", True)   # trailing space moves to the continuation
    assert ctx == split_continuation(tok, "Answer:", " A", True)[0] and cont == split_continuation(tok, "Answer:", " A", True)[1]
    assert ctx[0] == tok.bos_token_id
    assert split_continuation(tok, "Answer:", " A", False)[0][0] != tok.bos_token_id
    # "mod" + "el" is one piece in this vocabulary: the scored part starts where the encodings diverge
    ctx, cont = split_continuation(tok, "the mod", "el", True)
    whole = [tok.bos_token_id] + tok("the model", add_special_tokens=False)["input_ids"]
    assert ctx + cont == whole and len(cont) >= 1
    with pytest.raises(ChatflowError, match="adds no token"):
        split_continuation(tok, "Answer:", "", True)


@pytest.mark.parametrize("name,writer", [("mmlu", write_mmlu), ("ceval", write_ceval), ("gaokao", write_gaokao)])
def test_scores_equal_unbatched_reference_on_every_path(tmp_path, tiny, name, writer):
    """Batched, cached (a shared prefix run once) and plain rows all give the reference's numbers (1e-5)."""
    model, tok = tiny
    bench = load_benchmark(name, writer(tmp_path / name), 2)
    requests = _requests(bench, 2)[:6]
    ref = _reference(model, tok, requests)
    prefixes = [shared_prefix(name, s, 2) for s in bench.subjects for q in s.questions][:6]
    runs = {}
    for mode in PREFIX_CACHE_MODES:
        for batch in (1, 4):
            scorer = LetterScorer(model, tok, batch_size=batch, prefix_cache=mode)
            runs[mode, batch] = scorer.loglikelihoods(requests, prefixes=prefixes), scorer.stats
            np.testing.assert_allclose(runs[mode, batch][0], ref, atol=1e-5, err_msg=f"{mode}, batch {batch}")
            assert list(predictions(runs[mode, batch][0])) == list(predictions(ref))
    again = LetterScorer(model, tok, batch_size=4).loglikelihoods(requests, prefixes=prefixes)
    np.testing.assert_array_equal(again, runs["auto", 4][0])   # deterministic
    never, always = runs["never", 4][1], runs["always", 4][1]
    assert never.prefix_forward_passes == never.shared_prefix_rows == 0
    if name == "ceval":   # letters are single tokens here: one row per question, the subject's exemplars shared
        assert always.prefix_forward_passes == len(set(prefixes)) and always.shared_prefix_rows == 6
    else:   # "▁" + letter: four rows per question, sharing the question's context
        assert always.prefix_forward_passes == 6 and always.shared_prefix_rows == 24
    assert always.tokens < never.tokens / 2   # the exemplars (or the context) computed once
    assert runs["auto", 4][1].tokens <= never.tokens


def test_prefix_that_does_not_match_the_tokens_is_not_shared(tmp_path, tiny):
    model, tok = tiny
    bench = load_benchmark("ceval", write_ceval(tmp_path / "ceval"), 2)
    requests = _requests(bench, 2)[:4]
    scorer = LetterScorer(model, tok, batch_size=4, prefix_cache="always")
    got = scorer.loglikelihoods(requests, prefixes=["not the prefix"] * 4)
    assert scorer.stats.shared_prefix_rows == 0
    np.testing.assert_allclose(got, LetterScorer(model, tok, prefix_cache="never").loglikelihoods(requests), atol=1e-5)
    with pytest.warns(UserWarning, match="no key/value cache"):
        assert LetterScorer(OracleLM(tok), tok).share_prefix is False   # a model without a cache is scored plainly
    assert LetterScorer(OracleLM(tok), tok, prefix_cache="never").prefix_cache == "never"   # asked for: no warning


def test_cost_rule_caches_a_prefix_only_when_it_pays(tiny):
    model, _ = tiny
    cost = ForwardCost.of(model)
    assert cost is not None and cost.per_token > 0 and cost.per_pair > 0
    assert cost.prefix_pays(300, [40] * 16, 8)              # long exemplars shared by many questions
    assert not cost.prefix_pays(300, [40], 8)                # one row: the prefix forward is pure overhead
    assert not cost.prefix_pays(2, [400] * 16, 8)            # a prefix of two tokens saves less than its call
    assert cost.cached(300, [40] * 16, 8) < cost.plain([340] * 16, 8)


def test_single_token_fast_path_and_multi_token_letters_are_counted(tmp_path, tiny):
    model, tok = tiny
    # In this tiny vocabulary "A" after "答案：" is one token but " A" after "Answer:" is "▁" + "A".
    assert letter_tokens(tok, "ceval")["A"] == ["<0x41>"]
    assert letter_tokens(tok, "mmlu")[" A"] == ["▁", "<0x41>"]
    ceval = load_benchmark("ceval", write_ceval(tmp_path / "ceval"), 1)
    mmlu = load_benchmark("mmlu", write_mmlu(tmp_path / "mmlu"), 1)
    scorer = LetterScorer(model, tok, batch_size=8, prefix_cache="never")
    scorer.loglikelihoods(_requests(ceval, 1))
    assert scorer.stats.single_token_questions == 16 and scorer.stats.multi_token_questions == 0
    assert scorer.stats.forward_passes == 2   # one row per question
    scorer.loglikelihoods(_requests(mmlu, 1))
    assert scorer.stats.multi_token_questions == 16 and scorer.stats.forward_passes == 2 + 8   # 4 rows each
    shared = LetterScorer(model, tok, batch_size=8, prefix_cache="always")
    shared.loglikelihoods(_requests(mmlu, 1))   # each question's context once, its 4 continuations from the cache
    assert shared.stats.prefix_forward_passes == 16 and shared.stats.shared_prefix_rows == 64


@pytest.mark.parametrize("name,writer", [("mmlu", write_mmlu), ("ceval", write_ceval), ("gaokao", write_gaokao)])
def test_oracle_lm_scores_100_percent(tmp_path, tiny, name, writer):
    _, tok = tiny
    bench = load_benchmark(name, writer(tmp_path / name), 3)
    protocol = protocols_of(name)[0]
    targets, _ = letter_targets(protocol, tok)   # the letters' tokens, or the answer texts as a fallback
    answers = {}
    for s in bench.subjects:
        if s.kind not in protocol.kinds:
            continue
        for q in s.questions:
            ctx, _ = build_prompt(name, s, q, 3)
            answers[ctx] = targets[LETTERS.index(q.answer)]
    oracle = OracleLM(tok, answers)
    settings = EvalSettings(num_fewshot=3, progress=False, generation=False)
    result = evaluate_benchmark(LetterScorer(oracle, tok, batch_size=3), bench, settings)
    assert result["acc"] == 1.0 and result["accuracy_micro"] == 1.0 and result["accuracy_macro"] == 1.0
    assert all(s["correct"] == s["n"] for s in result["subjects"].values())


def test_uniform_lm_scores_chance_and_random_model_near_chance(tmp_path, tiny):
    model, tok = tiny
    bench = load_benchmark("mmlu", write_mmlu(tmp_path / "mmlu", subjects=("a", "b", "c", "d"), n_test=20), 3)
    uniform = evaluate_benchmark(LetterScorer(OracleLM(tok), tok), bench, EvalSettings(progress=False))
    assert uniform["acc"] == pytest.approx(0.25)   # all tied -> always "A"; a quarter of the golds are A
    random_model = evaluate_benchmark(LetterScorer(model, tok, batch_size=16), bench, EvalSettings(progress=False))
    assert 0.1 <= random_model["acc"] <= 0.45 and random_model["n_questions"] == 80


def test_limit_predictions_and_averages(tmp_path, tiny):
    model, tok = tiny
    bench = load_benchmark("gaokao", write_gaokao(tmp_path / "gk", n=12), 3)
    seen = []
    settings = EvalSettings(limit=4, progress=False, generation=False)
    result = evaluate_benchmark(LetterScorer(model, tok), bench, settings, seen.append)
    assert result["n_questions"] == 4 == len(seen) and result["average"] == "points"
    rec = result["subjects"]["2010-2022_Biology_MCQs"]
    assert result["acc"] == pytest.approx(rec["points_correct"] / rec["points"])
    assert seen[0]["location"].endswith("#example[3]") and len(seen[0]["loglikelihoods"]) == 4
    assert {p["prediction"] for p in seen} <= set(LETTERS)
    json.dumps(result)


def test_truncation_is_counted(tmp_path, tiny):
    model, tok = tiny
    bench = load_benchmark("ceval", write_ceval(tmp_path / "ceval"), 3)
    requests = _requests(bench, 3)[:3]
    scorer = LetterScorer(model, tok, max_length=32)
    scores = scorer.loglikelihoods(requests)
    assert scorer.stats.truncated_rows == 3 and np.isfinite(scores).all()


def test_bad_arguments(tiny, tmp_path, spm_model):
    model, tok = tiny
    with pytest.raises(ChatflowError, match="batch_size"):
        LetterScorer(model, tok, batch_size=0)
    with pytest.raises(ChatflowError, match="continuations, expected 4"):
        LetterScorer(model, tok).loglikelihoods([("q", [" A", " B", " C", " D"]), ("q", [" A"])])
    assert LetterScorer(model, tok).loglikelihoods([]).shape == (0, 0)
    with pytest.raises(ChatflowError, match="not a HuggingFace model directory"):
        load_model(str(tmp_path), device="cpu")
    with pytest.raises(ChatflowError, match="--dtype"):
        load_model(str(write_tiny_llama(spm_model, tmp_path / "m")), device="cpu", dtype="int3")
    assert resolve_device("cpu") == "cpu" and resolve_device("auto") in ("cpu", "cuda")
    assert list(predictions(np.array([[0.0, 0.0, -1.0, 0.0], [-3.0, -2.0, -1.0, -0.5]]))) == [0, 3]


def test_damaged_model_folders_name_the_file_and_what_is_wrong(tmp_path, spm_model):
    def folder(name: str):
        return write_tiny_llama(spm_model, tmp_path / name, hidden=16, layers=1)

    def error(path) -> str:
        with pytest.raises(ChatflowError) as caught:
            load_model(str(path), device="cpu")
        return str(caught.value)

    bad = folder("config")
    (bad / "config.json").write_text('{"model_type": "llama",')
    assert error(bad).startswith(f"{bad / 'config.json'}: not valid JSON")   # not blamed on the tokenizer
    bad = folder("spm")
    (bad / "tokenizer.model").write_bytes(b"not a model")
    assert error(bad).startswith(f"{bad / 'tokenizer.model'}: not a sentencepiece model")   # (not: install tiktoken)
    bad = folder("json")
    (bad / "tokenizer.json").write_text('{"version": "1.0", "trunc')
    assert error(bad).startswith(f"{bad / 'tokenizer.json'}: not valid JSON")
    bad = folder("none")
    for name in ("tokenizer.model", "tokenizer_config.json", "special_tokens_map.json"):
        (bad / name).unlink()
    assert error(bad).startswith(f"{bad}: no tokenizer files (none of tokenizer.json, tokenizer.model")
    bad = folder("weights")
    (bad / "model.safetensors").write_bytes((bad / "model.safetensors").read_bytes()[:3000])   # a cut-short file
    assert error(bad).startswith(f"{bad}: cannot load the model from model.safetensors: ")
    bad = folder("no_weights")
    (bad / "model.safetensors").unlink()
    assert error(bad).startswith(f"{bad}: cannot load the model (no weight files): ")


def test_tokenizer_larger_than_embedding_is_refused(tmp_path, spm_model):
    out = write_tiny_llama(spm_model, tmp_path / "m", vocab_size=100)
    with pytest.raises(ChatflowError, match="tokenizer has .* tokens but the embedding only"):
        load_model(str(out), device="cpu")


def test_evaluate_model_reports_letter_tokens(tmp_path, tiny):
    model, tok = tiny
    bench = load_benchmark("cmmlu", __import__("test_eval_benchmarks").write_cmmlu(tmp_path / "c"), 1)
    out = evaluate_model(model, tok, [bench], EvalSettings(num_fewshot=1, limit=2, progress=False))
    assert out["letter_tokens"]["cmmlu"]["A"] == ["<0x41>"] and out["benchmarks"]["cmmlu"]["n_questions"] == 4


class _ForwardWith:
    """A stand-in model whose forward takes the key/value cache under one transformers release's name."""

    def __init__(self, keyword):
        params = ", ".join(["input_ids=None", "attention_mask=None", "use_cache=None"] +
                           ([f"{keyword}=None"] if keyword else []))
        namespace = {}
        exec(f"def forward({params}): pass", namespace)
        self.forward = namespace["forward"]


@pytest.mark.parametrize("keyword", ["cache", "past_key_values"])
def test_cache_keyword_of_either_transformers_release_is_used(tiny, keyword):
    """transformers >= 5.24 takes ``cache``, earlier releases ``past_key_values``: both share prefixes."""
    from chatflow_plugin.evaluation.scoring import cache_kwarg

    assert cache_kwarg(_ForwardWith(keyword)) == keyword
    model, tok = tiny
    assert LetterScorer(model, tok).share_prefix   # the installed release's keyword is found


def test_a_model_without_a_cache_keyword_says_so_once(tiny):
    from chatflow_plugin.evaluation.scoring import cache_kwarg

    _, tok = tiny
    assert cache_kwarg(_ForwardWith(None)) is None
    with pytest.warns(UserWarning, match="no key/value cache"):
        scorer = LetterScorer(_ForwardWith(None), tok)
    assert not scorer.share_prefix
