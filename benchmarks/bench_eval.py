"""Evaluation speed on the CPU: questions/s per benchmark, and where the time goes.

For each benchmark (3-shot, real sample files from /work/shared/data/benchmarks when present, else
synthetic ones) this prints, side by side:

* ``ours``: ``LetterScorer`` as ``chatflow eval`` runs it (each subject's few-shot prefix run once and its
  key/value cache reused, one forward over the context for single-token letters, batches sorted by
  length, left padding, only the last logits materialised);
* ``no-cache``: the same without the shared-prefix cache;
* ``baseline``: the straightforward method (one unbatched forward per choice over context + letter,
  full-vocabulary log-softmax), on the first ``--baseline_questions`` questions;

and the split of our time into prompt text building, tokenisation and the model.

    python benchmarks/bench_eval.py [--hidden 256 --layers 4 --vocab 8000 --limit 20 --threads 2]

The model is a random LLaMA (the accuracy is meaningless; the work is the same as for a trained one);
the tokenizer is a sentencepiece BPE with byte fallback trained here on the benchmark text.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from chatflow_plugin.evaluation.benchmarks import load_benchmark  # noqa: E402
from chatflow_plugin.evaluation.prompts import build_prompt, shared_prefix  # noqa: E402
from chatflow_plugin.evaluation.scoring import LetterScorer, load_model, split_continuation  # noqa: E402

REAL = Path("/work/shared/data/benchmarks")


def synthetic_data(root: Path) -> Path:
    import csv
    import json
    import random

    rng = random.Random(0)
    en = "river mountain school teacher student computer program water city music history science".split()
    zh = "的一是在不了有和人这中大为上个国我以要他时来用们生到作地于出就分对成会可主发年动同工也能下过子说产种面"

    def row(zh_text: bool, i: int) -> list[str]:
        word = (lambda: "".join(rng.choice(zh) for _ in range(4))) if zh_text else (lambda: rng.choice(en))
        return [" ".join(word() for _ in range(25)), word(), word(), word(), word(), "ABCD"[i % 4]]

    for name, scored, suffix, header in (("mmlu", "test", "_{s}.csv", None),
                                         ("ceval", "val", "_{s}.csv", ["id", "question", "A", "B", "C", "D", "answer"]),
                                         ("cmmlu", "test", ".csv", ["", "Question", "A", "B", "C", "D", "Answer"])):
        for split, n in (("dev", 5), (scored, 60)):
            d = root / name / split
            d.mkdir(parents=True, exist_ok=True)
            for subject in ("alpha", "beta"):
                with open(d / f"{subject}{suffix.format(s=split)}", "w", newline="", encoding="utf-8") as f:
                    w = csv.writer(f)
                    if header:
                        w.writerow(header)
                    for i in range(n):
                        r = row(name != "mmlu", i)
                        w.writerow(([i] if header else []) + r)
    g = root / "gaokao"
    (g / "Objective_Questions").mkdir(parents=True, exist_ok=True)
    (g / "Obj_Prompt.json").write_text(json.dumps({"examples": [{"keyword": "Bio", "type": "single_choice",
                                                                  "prefix_prompt": "请你做一道生物选择题\n题目如下："}]}))
    ex = [{"question": " ".join(row(True, i)[:5]), "answer": ["ABCD"[i % 4]], "score": 5} for i in range(123)]
    (g / "Objective_Questions" / "Bio.json").write_text(json.dumps({"keywords": "Bio", "example": ex}, ensure_ascii=False))
    return root


def build_model(data_dir: Path, out: Path, hidden: int, layers: int, vocab: int) -> Path:
    import json

    import sentencepiece as spm
    from transformers import LlamaConfig, LlamaForCausalLM

    texts = []
    for name in ("mmlu", "ceval", "cmmlu", "gaokao"):
        bench = load_benchmark(name, data_dir / name, 3)
        for s in bench.subjects:
            texts += [build_prompt(name, s, q, 1)[0] for q in s.questions[:20]]
    out.mkdir(parents=True, exist_ok=True)
    (out / "corpus.txt").write_text("\n".join(t.replace("\n", " ") for t in texts), encoding="utf-8")
    spm.SentencePieceTrainer.train(input=str(out / "corpus.txt"), model_prefix=str(out / "tokenizer"),
                                   vocab_size=vocab, model_type="bpe", byte_fallback=True, character_coverage=0.9995,
                                   normalization_rule_name="identity", remove_extra_whitespaces=False,
                                   split_digits=True, unk_id=0, bos_id=1, eos_id=2, pad_id=-1, minloglevel=2,
                                   num_threads=2, hard_vocab_limit=False)
    sp = spm.SentencePieceProcessor(model_file=str(out / "tokenizer.model"))
    special = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}
    (out / "tokenizer_config.json").write_text(json.dumps(dict(special, tokenizer_class="LlamaTokenizer",
                                                               add_bos_token=True, add_eos_token=False, legacy=False)))
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=sp.vocab_size(), hidden_size=hidden, intermediate_size=hidden * 8 // 3,
                         num_hidden_layers=layers, num_attention_heads=max(1, hidden // 64),
                         num_key_value_heads=max(1, hidden // 64), max_position_embeddings=8192,
                         bos_token_id=1, eos_token_id=2)
    LlamaForCausalLM(config).save_pretrained(out)
    return out


def baseline_scores(model, tokenizer, requests) -> np.ndarray:
    out = np.zeros((len(requests), 4))
    with torch.inference_mode():
        for i, (context, conts) in enumerate(requests):
            for j, cont in enumerate(conts):
                ctx, ids = split_continuation(tokenizer, context, cont, True)
                logp = model(input_ids=torch.tensor([ctx + ids])).logits[0].float().log_softmax(-1)
                out[i, j] = sum(float(logp[len(ctx) - 1 + t, tok]) for t, tok in enumerate(ids))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--hidden", type=int, default=256, help="model width (default 256)")
    ap.add_argument("--layers", type=int, default=4, help="transformer layers (default 4)")
    ap.add_argument("--vocab", type=int, default=8000, help="sentencepiece vocabulary (default 8000)")
    ap.add_argument("--limit", type=int, default=20, help="questions per subject (default 20; 0: all)")
    ap.add_argument("--batch_size", type=int, default=8, help="sequences per forward (default 8)")
    ap.add_argument("--baseline_questions", type=int, default=24, help="questions timed for the baseline (default 24)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        data = REAL if REAL.is_dir() else synthetic_data(Path(tmp) / "data")
        model_dir = build_model(data, Path(tmp) / "model", args.hidden, args.layers, args.vocab)
        model, tok = load_model(str(model_dir), device="cpu", dtype="float32")
        params = sum(p.numel() for p in model.parameters())
        print(f"data: {data} | model: random LLaMA {args.layers}x{args.hidden}, vocab {len(tok)}, "
              f"{params / 1e6:.1f}M params | torch threads {torch.get_num_threads()} | batch {args.batch_size} | 3-shot\n")
        header = (f"{'benchmark':<8} {'questions':>9} {'tokens/q':>8} {'ours q/s':>9} {'no-cache q/s':>12} "
                  f"{'baseline q/s':>12} {'speed-up':>8} "
                  f"{'prompt text':>11} {'tokenize':>9} {'model':>7} {'max |diff|':>10}")
        print(header)
        print("-" * len(header))
        for name in ("mmlu", "ceval", "cmmlu", "gaokao"):
            bench = load_benchmark(name, data / name, 3)
            t0 = time.perf_counter()
            picked = [(s, q) for s in bench.subjects for q in (s.questions[: args.limit] if args.limit else s.questions)]
            requests = [build_prompt(name, s, q, 3) for s, q in picked]
            prefixes = [shared_prefix(name, s, 3) for s, _ in picked]
            t_prompt = time.perf_counter() - t0
            scorer = LetterScorer(model, tok, batch_size=args.batch_size)
            t0 = time.perf_counter()
            ours = scorer.loglikelihoods(requests, prefixes=prefixes)
            t_ours = time.perf_counter() - t0 + t_prompt
            st = scorer.stats
            t0 = time.perf_counter()
            plain = LetterScorer(model, tok, batch_size=args.batch_size).loglikelihoods(requests)
            t_plain = time.perf_counter() - t0 + t_prompt
            nb = min(args.baseline_questions, len(requests))
            t0 = time.perf_counter()
            base = baseline_scores(model, tok, requests[:nb])
            t_base = time.perf_counter() - t0
            q_ours, q_base = len(requests) / t_ours, nb / t_base
            diff = max(float(np.abs(base - ours[:nb]).max()), float(np.abs(plain - ours).max()))
            print(f"{name:<8} {len(requests):>9} {st.tokens / len(requests):>8.0f} "
                  f"{q_ours:>9.1f} {len(requests) / t_plain:>12.1f} {q_base:>12.1f} {q_ours / q_base:>7.1f}x {100 * t_prompt / t_ours:>10.1f}% "
                  f"{100 * st.seconds_tokenize / t_ours:>8.1f}% {100 * st.seconds_model / t_ours:>6.1f}% {diff:>10.1e}")
        print("\nprompt text / tokenize / model: shares of our wall time; tokens/q: tokens run through the model per "
              "question (ours); max |diff|: largest log-likelihood difference of ours vs no-cache and vs baseline; speed-up: ours / baseline.")


if __name__ == "__main__":
    main()
