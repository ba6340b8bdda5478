"""Evaluation speed on equal terms: ``chatflow eval``'s scorer next to lm-evaluation-harness 0.4.13, one run.

For every model of a ladder of randomly initialised LLaMAs (``--sizes``, layers x width) and every
benchmark (the real files under ``--data_dir``, in their public layouts), both sides score the same
questions (the first ``--limit`` of every subject, 3-shot) with the same prompts (``--protocol lm-eval``:
lm-evaluation-harness's stock tasks, pointed at the same local CSV files by
``chatflow_plugin.evaluation.lm_harness``), the same model in float32 on the CPU, the same batch size and
the same torch threads. Two clocks, the same boundary for both sides:

* **scoring**: the benchmark read and the model in memory before the clock starts (ours:
  ``load_benchmark``; lm-eval: ``TaskManager.load`` and the num_fewshot override, as ``simple_evaluate``
  does before it calls ``evaluate``); the clock covers prompt building, tokenisation, the forward passes
  and the metrics (ours: ``evaluate_benchmark``; lm-eval: ``lm_eval.evaluator.evaluate``). Questions/s are
  the best of ``--repeats`` interleaved runs; the ratio is the median over the repeats of lm-eval's time
  over ours, the two run back to back (on a shared machine the load changes between repeats).
* **end to end**: from the files and the model directory to the results (ours: ``load_model`` +
  ``load_benchmark`` + ``evaluate_benchmark``; lm-eval: ``simple_evaluate(model="hf", ...)``, its task
  index built beforehand). One run each.

Per benchmark it prints questions/s of both sides and their ratio, our scorer with the shared-prefix
cache forced on and off next to the cost rule's choice (``--prefix_cache auto``, the default), our
``--protocol official`` for reference, the largest per-question log-likelihood difference to lm-eval and
whether every prediction agrees. GAOKAO-Bench has no stock lm-eval task: its rows time our 3-shot
reading and our batched zero-shot generation (``--gen_tokens`` new tokens per question, the model being
random it never stops early) against generating one question at a time. Everything is also written to
``--output`` (JSON).

    python benchmarks/bench_eval.py --data_dir DIR [--sizes 4x256,8x512,12x768] [--limit 10] [--max_subjects 0] \\
        [--batch_size 8] [--threads 2] [--repeats 2] [--output bench_eval.json]

``DIR`` holds ``mmlu/``, ``ceval/``, ``cmmlu/``, ``gaokao/`` as ``chatflow eval --data_dir`` reads them. The
tokenizer is a sentencepiece BPE (byte fallback) trained here on those files; the models are random
(their accuracy is meaningless, the work is that of a trained model of the same shape).
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")   # lm-eval's progress bars would bury the table (read when tqdm loads)

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from chatflow_plugin.evaluation.generation import generate_answers  # noqa: E402
from chatflow_plugin.evaluation.lm_harness import write_task_yamls  # noqa: E402
from chatflow_plugin.evaluation.registry import BENCHMARKS, build_prompt, load_benchmark, protocols_of  # noqa: E402
from chatflow_plugin.evaluation.run import EvalSettings, evaluate_benchmark  # noqa: E402
from chatflow_plugin.evaluation.scoring import LetterScorer, load_model  # noqa: E402

K = 3


def train_tokenizer(benches: dict, out: Path, vocab: int) -> Path:
    import sentencepiece as spm

    texts = []
    for name, bench in benches.items():
        for s in bench.subjects:
            texts += [build_prompt(name, s, q, 1)[0] for q in s.questions[:20]]
    out.mkdir(parents=True, exist_ok=True)
    (out / "corpus.txt").write_text("\n".join(t.replace("\n", " ") for t in texts), encoding="utf-8")
    spm.SentencePieceTrainer.train(input=str(out / "corpus.txt"), model_prefix=str(out / "tokenizer"),
                                   vocab_size=vocab, model_type="bpe", byte_fallback=True, character_coverage=0.9995,
                                   normalization_rule_name="identity", remove_extra_whitespaces=False,
                                   split_digits=True, unk_id=0, bos_id=1, eos_id=2, pad_id=-1, minloglevel=2,
                                   num_threads=2, hard_vocab_limit=False)
    special = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}
    (out / "tokenizer_config.json").write_text(json.dumps(dict(special, tokenizer_class="LlamaTokenizer",
                                                               add_bos_token=True, add_eos_token=False, legacy=False,
                                                               model_max_length=4096)))
    return out


def build_model(tokenizer_dir: Path, out: Path, layers: int, hidden: int) -> Path:
    import shutil

    import sentencepiece as spm
    from transformers import LlamaConfig, LlamaForCausalLM

    vocab = spm.SentencePieceProcessor(model_file=str(tokenizer_dir / "tokenizer.model")).vocab_size()
    torch.manual_seed(0)
    heads = max(1, hidden // 64)
    config = LlamaConfig(vocab_size=vocab, hidden_size=hidden, intermediate_size=hidden * 8 // 3,
                         num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=heads,
                         max_position_embeddings=4096, bos_token_id=1, eos_token_id=2)
    LlamaForCausalLM(config).save_pretrained(out)
    for name in ("tokenizer.model", "tokenizer_config.json"):
        shutil.copyfile(tokenizer_dir / name, out / name)
    return out


def ours(model, tok, bench, protocol: str, limit: int, batch_size: int, prefix_cache: str = "auto"):
    """(seconds, {location: prediction record}, benchmark record) of our scorer: the scoring clock."""
    seen: list[dict] = []
    settings = EvalSettings(num_fewshot=K, limit=limit, batch_size=batch_size, protocol=protocol, progress=False,
                            prefix_cache=prefix_cache, generation=False)
    t0 = time.perf_counter()
    record = evaluate_benchmark(LetterScorer(model, tok, batch_size=batch_size, prefix_cache=prefix_cache), bench,
                                settings, seen.append)
    return time.perf_counter() - t0, {p["location"]: p for p in seen}, record


def ours_end_to_end(model_dir: Path, data: Path, name: str, limit: int, batch_size: int, max_subjects: int) -> float:
    t0 = time.perf_counter()
    model, tok = load_model(str(model_dir), device="cpu", dtype="float32")
    bench = load_benchmark(name, data / name, K)   # every file read, even with --max_subjects
    bench.subjects = bench.subjects[:max_subjects or None]
    ours(model, tok, bench, "lm-eval", limit, batch_size)
    return time.perf_counter() - t0


def _quiet():
    """lm-eval's progress bars (it enables them explicitly) and git look-ups go to a buffer, not the table."""
    import contextlib
    import io

    stack = contextlib.ExitStack()
    stack.enter_context(contextlib.redirect_stderr(io.StringIO()))
    return stack


def _lm_eval_tasks(task_manager, tasks: list[str]):
    loaded = task_manager.load(tasks)
    for task in loaded["tasks"].values():   # what simple_evaluate does before it calls evaluate
        task.set_config(key="num_fewshot", value=K)
        task.set_fewshot_seed(seed=1234)
    return loaded


def lm_eval_scoring(lm, task_manager, tasks: list[str], bench, limit: int):
    """(seconds, {location: [log-likelihoods]}) of lm-eval's evaluate() on tasks loaded before the clock."""
    from lm_eval.evaluator import evaluate

    loaded = _lm_eval_tasks(task_manager, tasks)
    with _quiet():
        t0 = time.perf_counter()
        out = evaluate(lm=lm, task_dict=loaded, limit=limit or None, log_samples=True)
        seconds = time.perf_counter() - t0
    results = {}
    for task, subject in zip(tasks, bench.subjects):
        for sample in out["samples"][task]:
            results[subject.questions[sample["doc_id"]].location] = [float(r[0]) for r in sample["filtered_resps"]]
    return seconds, results


def lm_eval_end_to_end(model_dir: Path, task_manager, tasks: list[str], limit: int, batch_size: int) -> float:
    from lm_eval import simple_evaluate

    with _quiet():
        t0 = time.perf_counter()
        simple_evaluate(model="hf", model_args=f"pretrained={model_dir},dtype=float32", tasks=tasks, num_fewshot=K,
                        batch_size=batch_size, device="cpu", limit=limit or None, task_manager=task_manager,
                        log_samples=True)
        return time.perf_counter() - t0


def compare(mine: dict, theirs: dict) -> tuple[float, bool]:
    """(largest |log-likelihood difference|, every prediction equal) over the questions both scored."""
    diff = max(float(np.abs(np.array(mine[k]["loglikelihoods"]) - np.array(v)).max()) for k, v in theirs.items())
    same = len(mine) == len(theirs) and all("ABCD"[int(np.argmax(v))] == mine[k]["prediction"]
                                            for k, v in theirs.items())
    return diff, same


def agree(a: dict, b: dict) -> tuple[float, bool]:
    diff = max(float(np.abs(np.array(a[k]["loglikelihoods"], dtype=float).ravel()
                            - np.array(b[k]["loglikelihoods"], dtype=float).ravel()).max()) for k in a)
    return diff, all(a[k]["prediction"] == b[k]["prediction"] for k in a)


def gaokao_generation(model, tok, bench, questions: int, new_tokens: int, batch_size: int) -> dict:
    """Batched greedy generation vs one question at a time on the first questions of every subject."""
    protocol = next(p for p in protocols_of("gaokao") if p.kind == "generation")
    owners = [(s, q) for s in bench.subjects for q in (s.fewshot_pool + s.questions)][:questions]
    prompts = [protocol.prompt(s, q, tok, "raw") for s, q in owners]
    needs = [protocol.stop_after(s.kind, q) for s, q in owners]
    out = {}
    for label, size in (("batched", batch_size), ("one_at_a_time", 1)):
        t0 = time.perf_counter()
        answers = generate_answers(model, tok, prompts, needs, max_new_tokens=new_tokens, max_length=4096,
                                   stop_text=protocol.stop_text, batch_size=size)
        seconds = time.perf_counter() - t0
        out[label] = {"seconds": seconds, "questions_per_s": len(owners) / seconds,
                      "new_tokens_per_s": sum(a.new_tokens for a in answers) / seconds, "questions": len(owners)}
        out[label]["texts"] = [a.text for a in answers]
    out["same_outputs"] = out["batched"].pop("texts") == out["one_at_a_time"].pop("texts")
    return out


def run_size(args, data: Path, tmp: Path, tokenizer_dir: Path, task_manager, spec: str, benches: dict) -> dict:
    layers, hidden = (int(x) for x in spec.lower().split("x"))
    model_dir = build_model(tokenizer_dir, tmp / f"model_{spec}", layers, hidden)
    model, tok = load_model(str(model_dir), device="cpu", dtype="float32")
    params = sum(p.numel() for p in model.parameters())
    lm = None
    try:
        from lm_eval.models.huggingface import HFLM
        lm = HFLM(pretrained=str(model_dir), batch_size=args.batch_size, device="cpu", dtype="float32")
    except ImportError:
        print("lm-evaluation-harness not installed (pip install 'lm-eval==0.4.13'): its columns stay empty")
    result = {"size": spec, "layers": layers, "hidden": hidden, "params": params, "benchmarks": {}}
    print(f"\n== random LLaMA {spec}: {params / 1e6:.1f}M parameters, vocab {len(tok)} ==")
    print(HEADER, flush=True)
    for name, bench in benches.items():
        tasks = yaml_tasks = None
        if lm is not None and BENCHMARKS[name].lm_eval is not None:
            yaml_tasks = tmp / "tasks" / name
            tasks = write_task_yamls(name, data / name, [s.name for s in bench.subjects], yaml_tasks)
        best = {}
        runs = {}
        ratios = []   # lm-eval's time over ours, each repeat's pair run back to back (the same load)
        for _ in range(max(1, args.repeats)):   # interleaved, best of: the load on the machine varies
            pair = {}
            for label, protocol, cache in (("ours", "lm-eval", "auto"), ("lm_eval", None, None),
                                           ("cache_never", "lm-eval", "never"), ("cache_always", "lm-eval", "always"),
                                           ("official", "official", "auto")):
                if label == "lm_eval":
                    if not tasks:
                        continue
                    seconds, outcome = lm_eval_scoring(lm, task_manager, tasks, bench, args.limit)
                else:
                    if name == "gaokao" and protocol == "lm-eval":
                        protocol = "official"   # its letter reading: the same protocol in both sets
                    seconds, seen, record = ours(model, tok, bench, protocol, args.limit, args.batch_size, cache)
                    outcome = (seen, record)
                pair[label] = seconds
                if seconds < best.get(label, float("inf")):
                    best[label], runs[label] = seconds, outcome
            if "lm_eval" in pair:
                ratios.append(pair["lm_eval"] / pair["ours"])
        seen, record = runs["ours"]
        n = len(seen)
        row = {"questions": n, "tokens_per_question": record["stats"]["tokens"] / n,
               "seconds": best, "questions_per_s": {k: n / v for k, v in best.items()},
               "stats": record["stats"]}
        for label in ("cache_never", "cache_always"):
            row[f"{label}_agrees"] = dict(zip(("max_abs_diff", "same_predictions"), agree(seen, runs[label][0])))
        if tasks:
            diff, same = compare(seen, runs["lm_eval"])
            row.update(vs_lm_eval=float(np.median(ratios)), vs_lm_eval_each_repeat=ratios,
                       vs_lm_eval_best_times=best["lm_eval"] / best["ours"], max_abs_diff=diff, same_predictions=same)
            e2e_ours = ours_end_to_end(model_dir, data, name, args.limit, args.batch_size, args.max_subjects)
            e2e_lm = lm_eval_end_to_end(model_dir, task_manager, tasks, args.limit, args.batch_size)
            row["end_to_end"] = {"ours_s": e2e_ours, "lm_eval_s": e2e_lm, "ours_qps": n / e2e_ours,
                                 "lm_eval_qps": n / e2e_lm, "ratio": e2e_lm / e2e_ours}
        if name == "gaokao" and args.gen_questions:
            row["generation"] = gaokao_generation(model, tok, bench, args.gen_questions, args.gen_tokens,
                                                  args.batch_size)
        result["benchmarks"][name] = row
        print_row(name, row)
    del model, lm
    return result


HEADER = (f"{'benchmark':<9} {'q':>5} {'tok/q':>6} {'ours q/s':>9} {'lm-eval q/s':>11} {'ratio':>6} "
          f"{'e2e ours':>9} {'e2e lm-eval':>11} {'ratio':>6} {'cache on':>9} {'cache off':>9} "
          f"{'official':>9} {'max|diff|':>9} {'same':>5}")


def print_row(name: str, row: dict) -> None:
    q = row["questions_per_s"]
    e2e = row.get("end_to_end")
    cells = [f"{name:<9}", f"{row['questions']:>5}", f"{row['tokens_per_question']:>6.0f}", f"{q['ours']:>9.2f}",
             f"{q['lm_eval']:>11.2f}" if "lm_eval" in q else f"{'–':>11}",
             f"{row['vs_lm_eval']:>5.2f}x" if "vs_lm_eval" in row else f"{'–':>6}",
             f"{e2e['ours_qps']:>9.2f}" if e2e else f"{'–':>9}", f"{e2e['lm_eval_qps']:>11.2f}" if e2e else f"{'–':>11}",
             f"{e2e['ratio']:>5.2f}x" if e2e else f"{'–':>6}", f"{q['cache_always']:>9.2f}", f"{q['cache_never']:>9.2f}",
             f"{q['official']:>9.2f}", f"{row['max_abs_diff']:>9.1e}" if "max_abs_diff" in row else f"{'–':>9}",
             f"{('yes' if row['same_predictions'] else 'NO'):>5}" if "same_predictions" in row else f"{'–':>5}"]
    print(" ".join(cells), flush=True)
    gen = row.get("generation")
    if gen:
        b, one = gen["batched"], gen["one_at_a_time"]
        print(f"{'':<9} generation ({b['questions']} q): batched {b['questions_per_s']:.2f} q/s "
              f"({b['new_tokens_per_s']:.0f} tok/s), one at a time {one['questions_per_s']:.2f} q/s "
              f"({one['new_tokens_per_s']:.0f} tok/s), {b['questions_per_s'] / one['questions_per_s']:.2f}x, "
              f"same outputs: {'yes' if gen['same_outputs'] else 'NO'}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data_dir", required=True, help="directory with mmlu/, ceval/, cmmlu/, gaokao/ in their public "
                                                      "layouts (as chatflow eval --data_dir)")
    ap.add_argument("--sizes", default="4x256,8x512,12x768",
                    help="ladder of random LLaMAs, layers x width (default 4x256,8x512,12x768: 7M, 33M, 97M "
                         "parameters with the 8000-piece vocabulary)")
    ap.add_argument("--tasks", default=",".join(BENCHMARKS), help="benchmarks (default: all four)")
    ap.add_argument("--limit", type=int, default=10, help="questions per subject (default 10; 0: all)")
    ap.add_argument("--max_subjects", type=int, default=0, help="score only the first N subjects of every benchmark "
                                                                "(alphabetical; default 0: all)")
    ap.add_argument("--batch_size", type=int, default=8, help="sequences per forward, both sides (default 8)")
    ap.add_argument("--vocab", type=int, default=8000, help="sentencepiece vocabulary (default 8000)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads, both sides (default: torch's choice)")
    ap.add_argument("--repeats", type=int, default=2, help="interleaved runs of every scoring-clock method; the "
                                                           "best time is shown (default 2)")
    ap.add_argument("--gen_questions", type=int, default=16, help="GAOKAO questions generated for the generation "
                                                                  "timing (default 16; 0: skip)")
    ap.add_argument("--gen_tokens", type=int, default=32, help="new tokens per generated answer (default 32)")
    ap.add_argument("--output", default="bench_eval.json", help="JSON file of every figure (default bench_eval.json)")
    args = ap.parse_args()
    data = Path(args.data_dir)
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    missing = [str(data / t) for t in tasks if not (data / t).is_dir()]
    if missing or any(t not in BENCHMARKS for t in tasks):
        sys.exit(f"bench_eval.py: error: --data_dir must hold {', '.join(tasks)} (missing: {', '.join(missing)}); "
                 f"known benchmarks: {', '.join(BENCHMARKS)}")
    if args.threads:
        torch.set_num_threads(args.threads)
    import transformers

    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    benches = {name: load_benchmark(name, data / name, K) for name in tasks}
    if args.max_subjects:
        for bench in benches.values():
            bench.subjects = bench.subjects[:args.max_subjects]
    started = {"load_average": os.getloadavg(), "time": time.strftime("%Y-%m-%d %H:%M:%S")}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        os.environ.setdefault("HF_DATASETS_CACHE", str(tmp / "hf_datasets"))   # lm-eval's CSV cache
        os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
        logging.getLogger("lm_eval").setLevel(logging.ERROR)   # its per-task notes would bury the table
        tokenizer_dir = train_tokenizer(benches, tmp / "tokenizer", args.vocab)
        task_manager = None
        try:
            from lm_eval.tasks import TaskManager
            for name in tasks:   # every task YAML written before the index is built
                if BENCHMARKS[name].lm_eval is not None:
                    write_task_yamls(name, data / name, [s.name for s in benches[name].subjects], tmp / "tasks" / name)
            task_manager = TaskManager(include_path=str(tmp / "tasks"))
        except ImportError:
            pass
        print(f"data: {data} | torch threads {torch.get_num_threads()} | batch {args.batch_size} | {K}-shot | "
              f"limit {args.limit or 'all'} per subject{f' of the first {args.max_subjects} subjects' if args.max_subjects else ''} | scoring: best of {max(1, args.repeats)} interleaved runs | "
              f"load average {started['load_average'][0]:.1f}")
        print("ours / lm-eval: --protocol lm-eval (lm-eval's stock prompts, ' A' letters), prefix cache by the cost "
              "rule; cache on / off: ours with it forced; official: ours with --protocol official; e2e: end to end "
              "(model and files loaded inside the clock); max|diff|, same: log-likelihoods and predictions vs lm-eval")
        sizes = [run_size(args, data, tmp, tokenizer_dir, task_manager, spec.strip(), benches)
                 for spec in args.sizes.split(",") if spec.strip()]
    report = {"settings": {**vars(args), "num_fewshot": K, "torch_threads": torch.get_num_threads(),
                           "cpu_count": os.cpu_count(), "started": started,
                           "finished": {"load_average": os.getloadavg(), "time": time.strftime("%Y-%m-%d %H:%M:%S")}},
              "sizes": sizes}
    Path(args.output).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"\nwrote {args.output}")


if __name__ == "__main__":
    main()
