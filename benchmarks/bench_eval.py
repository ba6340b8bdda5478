"""Evaluation speed on the CPU: questions/s of ``chatflow eval`` next to lm-evaluation-harness, one run.

For each benchmark (3-shot, the real sample files from /work/shared/data/benchmarks when present,
else synthetic ones), on the same random LLaMA, the same files and the same protocol
(``--protocol lm-eval``: lm-evaluation-harness 0.4.13's stock tasks, pointed at the local files by
``chatflow_plugin.evaluation.lm_harness``), this prints side by side:

* ``ours``: ``chatflow eval``'s scorer (each subject's few-shot prefix run once and its key/value
  cache reused, one forward over the context for single-token letters, length-sorted batches, left
  padding, only the last logits materialised);
* ``no-cache``: the same without the shared-prefix cache;
* ``lm-eval``: ``lm_eval.simple_evaluate`` with ``HFLM`` (the whole call: task set-up from the CSV files
  and scoring), the same batch size;
* ``official``: our scorer under ``--protocol official`` (the benchmarks' own prompts and letters);

with the largest per-question log-likelihood difference to lm-eval, whether the predictions agree, and
the split of our time into prompt building, tokenisation and the model. GAOKAO-Bench has no stock
lm-eval task (ours only).

    python benchmarks/bench_eval.py [--hidden 256 --layers 4 --vocab 8000 --limit 20 --threads 2]

The model is a random LLaMA (the accuracy is meaningless; the work is the same as for a trained one);
the tokenizer is a sentencepiece BPE with byte fallback trained here on the benchmark text.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from chatflow_plugin.evaluation.lm_harness import write_task_yamls  # noqa: E402
from chatflow_plugin.evaluation.registry import BENCHMARKS, build_prompt, load_benchmark  # noqa: E402
from chatflow_plugin.evaluation.run import EvalSettings, evaluate_benchmark  # noqa: E402
from chatflow_plugin.evaluation.scoring import LetterScorer, load_model  # noqa: E402

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
    for name in BENCHMARKS:
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


def ours(model, tok, bench, protocol: str, limit: int, batch_size: int, share_prefix: bool = True):
    """(seconds, predictions by location, record) of our scorer under a protocol set."""
    seen: list[dict] = []
    settings = EvalSettings(num_fewshot=3, limit=limit, batch_size=batch_size, protocol=protocol, progress=False,
                            share_prefix=share_prefix, generation=False, bootstrap=100)
    t0 = time.perf_counter()
    record = evaluate_benchmark(LetterScorer(model, tok, batch_size=batch_size, share_prefix=share_prefix), bench,
                                settings, seen.append)
    return time.perf_counter() - t0, {p["location"]: p for p in seen}, record


def lm_eval_run(lm, name: str, data: Path, bench, limit: int, yaml_dir: Path):
    """(seconds, per-question results in our locations' order) of lm-eval's stock tasks on the same files."""
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    subjects = [s.name for s in bench.subjects]
    tasks = write_task_yamls(name, data / name, subjects, yaml_dir)
    t0 = time.perf_counter()
    out = simple_evaluate(model=lm, tasks=tasks, num_fewshot=3, limit=limit or None, log_samples=True,
                          task_manager=TaskManager(include_path=str(yaml_dir)), random_seed=0, numpy_random_seed=0,
                          torch_random_seed=0)
    seconds = time.perf_counter() - t0
    results = {}
    for task, subject in zip(tasks, bench.subjects):
        for sample in out["samples"][task]:
            q = subject.questions[sample["doc_id"]]
            results[q.location] = [float(r[0]) for r in sample["filtered_resps"]]
    return seconds, results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--hidden", type=int, default=256, help="model width (default 256)")
    ap.add_argument("--layers", type=int, default=4, help="transformer layers (default 4)")
    ap.add_argument("--vocab", type=int, default=8000, help="sentencepiece vocabulary (default 8000)")
    ap.add_argument("--limit", type=int, default=20, help="questions per subject (default 20; 0: all)")
    ap.add_argument("--batch_size", type=int, default=8, help="sequences per forward (default 8)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice)")
    ap.add_argument("--repeats", type=int, default=2, help="runs of every method, interleaved; the best time is "
                                                           "shown (default 2: the first warms up kernels and caches)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        os.environ.setdefault("HF_DATASETS_CACHE", str(Path(tmp) / "hf_datasets"))   # lm-eval's CSV cache
        os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
        logging.getLogger("lm_eval").setLevel(logging.ERROR)   # its per-task notes would bury the table
        data = REAL if REAL.is_dir() else synthetic_data(Path(tmp) / "data")
        model_dir = build_model(data, Path(tmp) / "model", args.hidden, args.layers, args.vocab)
        model, tok = load_model(str(model_dir), device="cpu", dtype="float32")
        try:
            from lm_eval.models.huggingface import HFLM
            lm = HFLM(pretrained=str(model_dir), batch_size=args.batch_size, device="cpu", dtype="float32")
        except ImportError:
            lm = None
            print("lm-evaluation-harness not installed (pip install 'lm-eval==0.4.13'): its column is empty\n")
        params = sum(p.numel() for p in model.parameters())
        print(f"data: {data} | model: random LLaMA {args.layers}x{args.hidden}, vocab {len(tok)}, "
              f"{params / 1e6:.1f}M params | torch threads {torch.get_num_threads()} | batch {args.batch_size} | "
              f"3-shot | limit {args.limit or 'all'} per subject | best of {max(1, args.repeats)} interleaved runs\n")
        header = (f"{'benchmark':<8} {'questions':>9} {'tokens/q':>8} {'ours q/s':>9} {'no-cache q/s':>12} "
                  f"{'lm-eval q/s':>11} {'vs lm-eval':>10} {'max |diff|':>10} {'same preds':>10} "
                  f"{'official q/s':>12} {'prompts':>8} {'tokenize':>9} {'model':>7}")
        print(header)
        print("-" * len(header))
        for name in BENCHMARKS:
            bench = load_benchmark(name, data / name, 3)
            with_lm = lm is not None and BENCHMARKS[name].lm_eval is not None
            t_ours = t_plain = t_official = t_lm = float("inf")
            for _ in range(max(1, args.repeats)):   # interleaved, best of: other load on the machine varies
                t, mine, run = ours(model, tok, bench, "lm-eval", args.limit, args.batch_size)
                if t < t_ours:   # the time split below is the best run's
                    t_ours, record = t, run
                t_plain = min(t_plain, ours(model, tok, bench, "lm-eval", args.limit, args.batch_size, False)[0])
                t_official = min(t_official, ours(model, tok, bench, "official", args.limit, args.batch_size)[0])
                if with_lm:
                    t, theirs = lm_eval_run(lm, name, data, bench, args.limit, Path(tmp) / "tasks" / name)
                    t_lm = min(t_lm, t)
            n, st = len(mine), record["stats"]
            lm_cells = f"{'–':>11} {'–':>10} {'–':>10} {'–':>10}"
            if with_lm:
                diff = max(float(np.abs(np.array(mine[k]["loglikelihoods"]) - np.array(v)).max()) for k, v in theirs.items())
                same = all("ABCD"[int(np.argmax(v))] == mine[k]["prediction"] for k, v in theirs.items())
                lm_cells = (f"{len(theirs) / t_lm:>11.1f} {t_lm / t_ours:>9.1f}x {diff:>10.1e} "
                            f"{('yes' if same and len(theirs) == n else 'NO'):>10}")
            print(f"{name:<8} {n:>9} {st['tokens'] / n:>8.0f} {n / t_ours:>9.1f} {n / t_plain:>12.1f} {lm_cells} "
                  f"{n / t_official:>12.1f} {100 * st['seconds_prompts'] / t_ours:>7.1f}% "
                  f"{100 * st['seconds_tokenize'] / t_ours:>8.1f}% {100 * st['seconds_model'] / t_ours:>6.1f}%")
        print("\nours / no-cache / lm-eval: --protocol lm-eval (lm-eval's stock prompts and ' A' letters); official: "
              "--protocol official (each benchmark's own prompts, letters, exemplar dropping). vs lm-eval: our speed-up. "
              "max |diff|: largest log-likelihood difference to lm-eval. prompts / tokenize / model: shares of our "
              "wall time (prompt building includes fitting the exemplars). tokens/q: tokens run through the model "
              "per question (ours).")


if __name__ == "__main__":
    main()
