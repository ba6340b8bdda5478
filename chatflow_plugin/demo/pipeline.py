"""``chatflow demo``: the whole ChatFlow recipe in miniature on a CPU, and the paper's sampler ablation.

1. split every group's documents into train / held-out (before any tokenization);
2. train an English byte-fallback BPE tokenizer (the "English foundation" tokenizer);
3. train a tiny LLaMA on English text only (the "English foundation model");
4. expand the vocabulary with the target language's characters (Chinese by default; the scripts the language
   table lists for it) mined from its training text; new embedding and output rows = the mean of the rows of
   the sub-tokens the English tokenizer splits them into;
5. continue training on the six-group mixture five ways, same data, tokens and seeds:
   dynamic (the ChatFlow sampler), static (the dynamic schedule's time-average: same expected samples per
   source, only the order differs), two-stage (pre-training groups, then instruction groups, with the
   same samples per source as the static run), piecewise (three phases: a warm-up without instructions, a
   main phase and a final annealing phase weighted towards instructions, again with the same samples per
   group) and adaptive (the dynamic schedule re-weighted from the held-out losses during the run: its samples
   per group are its own), each for every seed;
6. score every run on the same held-out windows per group during training, write CSV, PNG plots and a
   markdown report (:mod:`chatflow_plugin.demo.report`), save the dynamic run in HuggingFace format and answer
   one instruction in the target language and one in English (the table's default prompts) with ``transformers``.

``--search`` replaces step 5's ablation with ``chatflow search`` (:mod:`chatflow_plugin.search`): the schedule
chosen from proxy runs on the split's ``valid`` part, then checked against the base mixture's and the static
schedule on its ``test`` part (:func:`search_schedule`); step 1's split has the two halves of the held-out part.

The groups, their data folders and the target language come from the base mixture (:mod:`.groups`):
``--mixture models/mixtures/demo_ja.json --data_dir DIR`` runs the same recipe for Japanese on the user's data.

Stages whose output exists are reused, so an interrupted demo continues where it stopped (``--force``
starts over). ``--foundation_cache DIR`` takes stages 1-3 from a cache shared between demos (:mod:`.cache`);
``--stop_after foundation|mixture`` stops after stage 3 or after the mixture is tokenized, ``--run_kinds`` trains
only some of the run kinds (for scripts that need no more).
"""
from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from .cache import cached_stages, foundation_key
from .groups import SOURCE_LANGUAGE, base_mixture, group_languages, groups_in, target_language
from .report import write_report
from .split import SplitBudget, iter_texts, prepare_data
from ..data.mixture import MixtureSpec, write_mixture
from ..errors import ChatflowError
from ..files import path_for_file, pyplot, read_jsonl
from ..outputs import OutputKind, atomic_directory, output_folder, reused
from ..languages import get_language
from ..options import option
from ..resources import resource
from ..tokenizer import load_sentencepiece

RUN_KINDS = ("dynamic", "static", "two_stage", "piecewise", "adaptive")
STOPS = ("foundation", "mixture", "report")     # --stop_after: after stage 3, after the tokenized mixture, at the end
SPLIT_SEED = 0                 # the train / held-out split's shuffle
FOUNDATION_INIT_SEED = 1234    # the English foundation's initialisation
# the output folder's kind (chatflow_plugin.outputs): --force replaces only such a folder, holding nothing else
DEMO_KIND = OutputKind("demo", files=("generations.json", ".*.tmp", ".*.lock"),
                       folders=("data", "tokenizer", "mixtures", "shards", "foundation", "foundation_expanded", "runs",
                                "release", "report", "search", ".*.partial"))
# The adaptive run's policy (chatflow_plugin.data.adaptive): Online Data Mixing's signal (the held-out loss),
# modest steps and bounds around the dynamic schedule; it updates at the held-out evaluations.
ADAPTIVE_POLICY = {"signal": "loss", "rate": 1.0, "smoothing": 0.5, "min_factor": 0.5, "max_factor": 2.0}


@dataclass(frozen=True)
class Profile:
    model_config: str
    seq_length: int
    vocab_size: int
    new_chars: int
    foundation_steps: int
    train_steps: int
    micro_batch_size: int
    learning_rate: float
    heldout_every: int
    heldout_windows: int
    seeds: tuple[int, ...]
    budget: SplitBudget
    warmup_steps: int
    tokenizer_sentences: int
    search_proxies: int    # --search: proxy runs (the reference, its static average and sampled schedules)
    proxy_steps: int       # --search: optimizer steps of a proxy run (the final re-runs have train_steps)
    bf16: bool             # bf16 autocast pays off from a few million parameters; slower for the tiny model
    threads: int           # torch threads; one is fastest for the tiny model and robust on a busy machine


PROFILES = {
    "quick": Profile(model_config="models/hf/demo_tiny.json", seq_length=128, vocab_size=1000, new_chars=400,
                     foundation_steps=60, train_steps=40, micro_batch_size=8, learning_rate=3e-3, heldout_every=10,
                     heldout_windows=8, seeds=(0,), warmup_steps=5, tokenizer_sentences=50_000, search_proxies=8, proxy_steps=20,
                     bf16=False, threads=1,
                     budget=SplitBudget(heldout_chars=6_000, heldout_max_fraction=0.2, train_chars=250_000,
                                        code_bytes=150_000)),
    "full": Profile(model_config="models/hf/demo_small.json", seq_length=256, vocab_size=4000, new_chars=1500,
                    foundation_steps=400, train_steps=200, micro_batch_size=8, learning_rate=2e-3, heldout_every=40,
                    heldout_windows=24, seeds=(0, 1, 2), warmup_steps=20, tokenizer_sentences=300_000, search_proxies=48,
                    proxy_steps=120,
                    bf16=True, threads=1,
                    budget=SplitBudget(heldout_chars=60_000, heldout_max_fraction=0.1, train_chars=None,
                                       code_bytes=2_000_000)),
}


@dataclass
class DemoOptions:
    output_dir: str = option("chatflow_demo", help="folder for everything the demo writes")
    quick: bool = option(False, help="a few-minute run (CI): tiny model, one seed, few steps")
    mixture: str = option("", help="the base mixture: its groups (one data folder each), their alpha/beta and "
                                   "languages; the target language is its one language besides English (default: "
                                   "models/mixtures/tiny_corpora.json, Chinese; models/mixtures/demo_ja.json: Japanese)")
    data_dir: str = option("", help="folder with one sub-folder of *.jsonl per group of the mixture (en_corpus/ "
                                    "zh_corpus/ parallel/ en_inst/ zh_inst/ [code/] by default; default: the "
                                    "mixture's data_root, the bundled corpora/ for the default mixture)")
    seeds: int = option(0, help="seeds per run kind (0: the profile's: 1 quick, 3 full)")
    train_steps: int = option(0, help="optimizer steps per continued-training run (0: the profile's)")
    foundation_steps: int = option(0, help="optimizer steps of the English foundation (0: the profile's)")
    t_grow_fraction: float = option(0.6, help="T_grow as a fraction of the continued-training run")
    threads: int = option(0, help="torch CPU threads (0: the profile's: 1; more threads only pay off on an idle machine)")
    precision: str = option("auto", choices=["auto", "bf16", "fp32"],
                            help="auto: fp32 for --quick's tiny model, bf16 autocast for the full miniature "
                                 "(about 5x faster than fp32 there on a CPU with bf16 support)")
    skip_generation: bool = option(False, help="do not load the released model and generate")
    search: bool = option(False, help="instead of the five-way ablation, choose the schedule with `chatflow search`: "
                                      "proxy runs continued from the expanded foundation, scored on a validation "
                                      "split; the chosen, reference (the base mixture's) and static schedules re-run "
                                      "with the profile's seeds on a test split (report in <output_dir>/search/report)")
    search_proxies: int = option(0, help="--search: proxy runs (0: the profile's: 8 quick, 48 full)")
    proxy_steps: int = option(0, help="--search: optimizer steps of each proxy run (0: the profile's: 20 quick, 120 "
                                      "full); the final re-runs have --train_steps")
    workers: int = option(1, help="--search: runs trained at once (each with --threads threads)")
    ladder: int = option(0, help="--search: re-run the best and worst this many proxies at twice their training "
                                 "length and report whether their order holds (0: no ladder)")
    run_kinds: list = option(default_factory=list, repeatable=True, type=str, choices=RUN_KINDS,
                             help="the continued-training runs to make, dynamic among them (the others are compared "
                                  "with it; default: all five)")
    stop_after: str = option("report", choices=list(STOPS),
                             help="foundation: stop after the English foundation; mixture: after the vocabulary "
                                  "expansion and the tokenized mixture; report: run everything")
    foundation_cache: str = option("", help="folder of English foundations shared between demos: the split, the "
                                            "English tokenizer and foundation are taken from it when an entry for "
                                            "the same data, settings, code and libraries is there, else built into "
                                            "it (concurrent demos wait for one another)")
    force: bool = option(False, help="delete output_dir first and start over (only a demo's output folder holding "
                                     "nothing else)")


def _say(message: str) -> None:
    print(f"[chatflow demo {time.strftime('%H:%M:%S')}] {message}", flush=True)


def _finished(stage: str, output: Path, finished: Path) -> bool:
    """Whether ``stage`` is finished (``finished`` exists); if so, says that its ``output`` is reused."""
    if not finished.is_file():
        return False
    _say(reused(stage, output, finished))
    return True


def default_data_dir() -> Path:
    return resource("corpora")


# ---------------------------------------------------------------------------------------------
# Stages


def train_english_tokenizer(train_dir: Path, out_prefix: Path, vocab_size: int, sentences: int,
                            base: MixtureSpec | None = None) -> Path:
    """A LLaMA-style byte-fallback BPE model on the English (source-language) training text only."""
    import sentencepiece as spm

    text_file = out_prefix.with_suffix(".txt")
    with open(text_file, "w", encoding="utf-8") as handle:
        for group in groups_in(SOURCE_LANGUAGE, spec=base):
            for text in iter_texts(train_dir / group / "data.jsonl"):
                for line in text.splitlines():
                    if line.strip():
                        handle.write(line + "\n")
    spm.SentencePieceTrainer.train(
        input=str(text_file), model_prefix=str(out_prefix), vocab_size=vocab_size, model_type="bpe",
        byte_fallback=True, character_coverage=0.9995, split_digits=True, unk_id=0, bos_id=1, eos_id=2, pad_id=-1,
        normalization_rule_name="identity", remove_extra_whitespaces=False, add_dummy_prefix=True,
        allow_whitespace_only_pieces=True, input_sentence_size=sentences, shuffle_input_sentence=True,
        num_threads=os.cpu_count() or 1, minloglevel=2, max_sentence_length=16384,
        hard_vocab_limit=False)   # small data: fewer pieces rather than an error
    text_file.unlink()
    return out_prefix.with_suffix(".model")


def _mixture_json(groups: list[dict], seq_length: int, t_grow: float, data_root: Path, name: str,
                  seed: int = 42) -> dict:
    return {"name": name, "seq_length": seq_length, "T_grow": t_grow, "schedule_unit": "samples", "seed": seed,
            "data_root": str(data_root), "groups": groups}


def _groups_from_base(base: MixtureSpec | None = None, weights: dict[str, tuple[float, float]] | None = None
                      ) -> list[dict]:
    """The base mixture's groups (the paper's six, alpha and beta as its file sets them), one source each, reading
    ``<group>/*.jsonl`` under the split data."""
    groups = []
    for g in (base or base_mixture()).groups:
        alpha, beta = ((g.schedule_params["alpha"], g.schedule_params["beta"]) if weights is None
                       else weights[g.name])
        sources = [{"name": s.name, "kind": s.kind, "paths": [f"{g.name}/*.jsonl"]} for s in g.sources[:1]]
        if g.sources[0].kind == "parallel":
            sources[0]["fields"] = list(g.sources[0].fields)
        groups.append({"name": g.name, "alpha": alpha, "beta": beta, "language": g.language, "sources": sources})
    return groups


def run_mixtures(run_samples: int, t_grow: float, seq_length: int, data_root: Path,
                 base: MixtureSpec | None = None, adaptive_every: int = 0) -> dict[str, dict]:
    """The mixture files of the runs (two for the two-stage run): see :mod:`chatflow_plugin.data.baselines`;
    the adaptive run's is the dynamic one with :data:`ADAPTIVE_POLICY`, updated every ``adaptive_every`` samples
    (default: a tenth of the run)."""
    from ..data.baselines import (instruction_groups, static_mixture, three_phase_mixture, time_average_shares,
                                  two_stage_mixtures)
    from ..data.mixture import parse_mixture

    dynamic = _mixture_json(_groups_from_base(base), seq_length, t_grow, data_root, "demo_dynamic")
    spec = parse_mixture(dynamic, where="demo mixture")
    shares = time_average_shares(spec, run_samples)
    stage1, stage2, _ = two_stage_mixtures(spec, run_samples)
    adaptive = dict(dynamic, name="demo_adaptive",
                    adaptive=dict(ADAPTIVE_POLICY, every_samples=int(adaptive_every or max(1, run_samples // 10))))
    return {"dynamic": dynamic, "static": static_mixture(spec, run_samples), "stage1": stage1, "stage2": stage2,
            "piecewise": three_phase_mixture(spec, run_samples), "adaptive": adaptive,
            "shares": shares, "instruction_share": sum(shares[g] for g in instruction_groups(spec))}


def _train(**kw) -> dict:
    from ..hosts.hf.train import FINAL_DIR, TrainOptions, train

    summary = train(TrainOptions(**kw))
    if summary.get("already_finished"):      # a part of a run whose other parts were not all finished
        final = Path(kw["output_dir"]) / FINAL_DIR
        _say(reused(f"the training run {Path(kw['output_dir']).name}", final, final / "config.json"))
    return summary


def _continue_run(kind: str, seed: int, work: Path, mixtures: dict, steps: int, common: dict) -> Path:
    """One continued-training run (two Trainer runs for two_stage); returns its folder."""
    run_dir = work / "runs" / f"{kind}_s{seed}"
    if _finished(f"the {kind} run, seed {seed}", run_dir, run_dir / "done.json"):
        return run_dir
    mix_dir = work / "mixtures"
    foundation = str(work / "foundation_expanded")
    if kind != "two_stage":
        _train(output_dir=str(run_dir), model_path=foundation, mixture=str(mix_dir / f"{kind}.json"), seed=seed,
               init_seed=seed, train_steps=steps, **common)
        parts = [(run_dir, 0)]
    else:
        steps2 = max(1, round(steps * mixtures["instruction_share"]))
        steps1 = steps - steps2
        stage1, stage2 = run_dir / "stage1", run_dir / "stage2"
        _train(output_dir=str(stage1), model_path=foundation, mixture=str(mix_dir / "stage1.json"), seed=seed,
               init_seed=seed, train_steps=steps1, **common)
        _train(output_dir=str(stage2), model_path=str(stage1 / "final"), mixture=str(mix_dir / "stage2.json"),
               seed=seed, init_seed=seed, train_steps=steps2, **common)
        parts = [(stage1, 0), (stage2, steps1)]
        _merge_stage_logs(run_dir, parts, steps1)
    (run_dir / "done.json").write_text(json.dumps({"kind": kind, "seed": seed, "steps": steps}) + "\n")
    return run_dir


def _merge_stage_logs(run_dir: Path, parts: list[tuple[Path, int]], offset_steps: int) -> None:
    """One log for the two-stage run: stage 2's steps, samples and tokens continue stage 1's."""
    summaries = [json.loads((p / "train_summary.json").read_text()) for p, _ in parts]
    first_samples, first_tokens = summaries[0]["samples"], summaries[0]["tokens"]
    records = []
    for index, (part, _) in enumerate(parts):
        for _, r in read_jsonl(part / "log.jsonl"):
            if r.get("kind") == "summary":
                continue
            if index == 1 and r["kind"] == "heldout" and r["step"] == 0:
                continue   # the same model as stage 1's last evaluation
            # each stage's realised mixture covers that stage only; the whole run's is in the summary
            r = {k: v for k, v in r.items() if not k.startswith("mix_")}
            r["stage"] = index + 1
            if index == 1:
                r.update(step=r["step"] + offset_steps, samples=r["samples"] + first_samples,
                         tokens=r["tokens"] + first_tokens)
            records.append(r)
    (run_dir / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    group_samples = {g: sum(s["group_samples"][g] for s in summaries) for g in summaries[0]["group_samples"]}
    total = {"steps": sum(s["steps"] for s in summaries), "samples": sum(s["samples"] for s in summaries),
             "tokens": sum(s["tokens"] for s in summaries), "group_samples": group_samples,
             "seconds_this_session": sum(s["seconds_this_session"] for s in summaries),
             "final_model": path_for_file(parts[-1][0] / "final", run_dir / "train_summary.json", tree=run_dir)}
    (run_dir / "train_summary.json").write_text(json.dumps(total, indent=2) + "\n")


def generate_answers(model_dir: Path, spm_model: Path, prompts: dict[str, str], max_new_tokens: int = 48) -> dict:
    """Load the released HF directory with transformers only and answer each instruction greedily."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ..data.formats import INSTRUCTION_HEADER, RESPONSE_HEADER

    tok = AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), local_files_only=True)
    model.eval()
    sp = load_sentencepiece(spm_model)
    out = {}
    for lang, question in prompts.items():
        prompt = INSTRUCTION_HEADER + question + RESPONSE_HEADER
        ids = tok(prompt, return_tensors="pt")["input_ids"]
        if ids[0].tolist() != [sp.bos_id()] + sp.encode(prompt):
            raise ChatflowError(f"{model_dir}: the HF tokenizer does not reproduce sentencepiece's ids for the prompt")
        with torch.no_grad():
            generated = model.generate(ids, max_new_tokens=max_new_tokens, do_sample=False, repetition_penalty=1.3,
                                       eos_token_id=tok.eos_token_id, pad_token_id=tok.eos_token_id)
        answer = tok.decode(generated[0, ids.shape[1]:], skip_special_tokens=True)
        out[lang] = {"instruction": question, "prompt": prompt, "answer": answer}
    return out


# ---------------------------------------------------------------------------------------------
# The whole demo


class Layout:
    """Where each stage writes, under ``--output_dir``; a stage whose output exists is reused."""

    def __init__(self, root: Path):
        self.root = root
        self.data = root / "data"           # split.json, {train,heldout,valid,test}/<group>/ (heldout = valid + test)
        self.tokenizers = root / "tokenizer"
        self.english_model = self.tokenizers / "english.model"
        self.expanded_model = self.tokenizers / "expanded.model"
        self.mixtures = root / "mixtures"
        self.shards = root / "shards"
        self.foundation = root / "foundation"                  # the English foundation's training run
        self.expanded = root / "foundation_expanded"           # ... its final model with the expanded vocabulary
        self.release = root / "release"
        self.report = root / "report"


class _Clock:
    """Stage start times since the demo began, for the report, and the progress lines."""

    def __init__(self):
        self.started = time.time()
        self.timings: dict[str, float] = {}

    def stage(self, name: str) -> None:
        self.timings[name] = round(time.time() - self.started, 1)
        _say(name)

    def total(self) -> float:
        self.timings["total"] = round(time.time() - self.started, 1)
        return self.timings["total"]


def resolve_profile(options: DemoOptions) -> Profile:
    """The quick or full profile with the options' overrides."""
    if not 0 < options.t_grow_fraction:
        raise ChatflowError(f"--t_grow_fraction must be positive, got {options.t_grow_fraction}")
    profile = PROFILES["quick" if options.quick else "full"]
    overrides = {"seeds": tuple(range(options.seeds)) if options.seeds else None,
                 "train_steps": options.train_steps or None, "foundation_steps": options.foundation_steps or None,
                 "threads": options.threads or None,
                 "bf16": None if options.precision == "auto" else options.precision == "bf16"}
    return replace(profile, **{k: v for k, v in overrides.items() if v is not None})


def _prepare(options: DemoOptions, profile: Profile) -> Layout:
    import torch

    from ..hosts.hf.run import quiet_libraries

    out = Layout(Path(options.output_dir))
    torch.set_num_threads(profile.threads)
    quiet_libraries()
    return out


def _training_options(profile: Profile) -> dict:
    """``chatflow train`` options every run of the demo shares: a miniature's own learning rate, warm-up and
    Adam epsilon (torch's 1e-8, with which docs/demo.md's figures were measured), LLaMA-2's schedule shape."""
    return dict(micro_batch_size=profile.micro_batch_size, learning_rate=profile.learning_rate,
                warmup_steps=profile.warmup_steps, lr_scheduler="cosine_with_min_lr", adam_epsilon=1e-8,
                bf16=profile.bf16,
                log_every=max(1, profile.heldout_every // 2), heldout_windows=profile.heldout_windows,
                heldout_every=profile.heldout_every, quiet=True, threads=profile.threads, save_total_limit=1)


def split_data(data_dir: Path, out: Layout, profile: Profile, base: MixtureSpec | None = None) -> dict:
    """Every group's documents into train / held-out (its valid and test halves); returns ``split.json``."""
    if not _finished("the split", out.data, out.data / "split.json"):
        prepare_data(data_dir, out.data, profile.budget, seed=SPLIT_SEED, force=True, base=base or base_mixture())
    return json.loads((out.data / "split.json").read_text(encoding="utf-8"))


def english_tokenizer(out: Layout, profile: Profile, base: MixtureSpec | None = None) -> None:
    """The English tokenizer."""
    out.tokenizers.mkdir(exist_ok=True)
    if not _finished("the English tokenizer", out.english_model, out.english_model):
        train_english_tokenizer(out.data / "train", out.english_model.with_suffix(""), profile.vocab_size,
                                profile.tokenizer_sentences, base)


def english_foundation(out: Layout, profile: Profile, base: MixtureSpec | None = None) -> None:
    """A tiny LLaMA trained on the English corpus groups only."""
    from ..data.mixture import load_mixture
    from ..data.preprocess import preprocess

    if _finished("the English foundation", out.foundation / "final", out.foundation / "final" / "config.json"):
        return
    corpus = [g for g in _groups_from_base(base) if g["name"] in groups_in(SOURCE_LANGUAGE, ("corpus",), base)]
    for g in corpus:
        g["alpha"] = g["beta"] = 1.0
    for split_name in ("train", "heldout"):
        mix = write_mixture(_mixture_json(corpus, profile.seq_length, 1.0, out.data / split_name,
                                          "english_foundation"),
                            out.mixtures / f"english_{split_name}.json", tree=out.root)
        preprocess(load_mixture(mix), out.english_model, out.shards / f"english_{split_name}", workers=0, force=True)
    _train(dataset_dir=str(out.shards / "english_train"), output_dir=str(out.foundation),
           model_config=str(resource(profile.model_config)), tokenizer=str(out.english_model),
           heldout_dir=str(out.shards / "english_heldout"), train_steps=profile.foundation_steps,
           init_seed=FOUNDATION_INIT_SEED, **_training_options(profile))


def expand_vocabulary(out: Layout, profile: Profile, base: MixtureSpec | None = None) -> None:
    """The target language's most frequent new characters (of the scripts the language table lists for it)
    appended; new rows = sub-token means."""
    from ..checkpoints import vocab

    if _finished("the vocabulary expansion", out.expanded, out.expanded / "config.json"):
        return
    target = target_language(base)
    corpora = [out.data / "train" / g / "data.jsonl" for g in groups_in(target, spec=base)]
    mined = vocab.mine_pieces(corpora, out.english_model, scripts=get_language(target).expansion_scripts,
                              min_count=2, max_new_pieces=profile.new_chars)
    expansion = vocab.expand_sentencepiece(out.english_model, [p for p, _ in mined], out.expanded_model)
    (out.tokenizers / "added_pieces.txt").write_text("".join(p + "\n" for p in expansion.added), encoding="utf-8")
    vocab.expand_checkpoint_rows(out.foundation / "final", out.expanded, out.english_model, out.expanded_model,
                                 force=True)


def tokenize_mixture(out: Layout, mixtures: dict) -> None:
    """The run mixtures written; the six groups tokenized once for training and once held out."""
    from ..data.mixture import load_mixture
    from ..data.preprocess import preprocess

    for name in ("dynamic", "static", "stage1", "stage2", "piecewise", "adaptive"):
        write_mixture(mixtures[name], out.mixtures / f"{name}.json", tree=out.root)
    spec = load_mixture(out.mixtures / "dynamic.json")
    if not _finished("the training shards", out.shards / "mixture_train",
                     out.shards / "mixture_train" / "manifest.json"):
        preprocess(spec, out.expanded_model, out.shards / "mixture_train", workers=0, force=True)
    if not _finished("the held-out shards", out.shards / "mixture_heldout",
                     out.shards / "mixture_heldout" / "manifest.json"):
        preprocess(spec.with_overrides(data_root=out.data / "heldout"), out.expanded_model,
                   out.shards / "mixture_heldout", workers=0, force=True)


def continued_training(out: Layout, profile: Profile, mixtures: dict, clock: _Clock,
                       kinds: tuple[str, ...] = RUN_KINDS) -> dict[str, Path]:
    """Every run kind of ``kinds`` for every seed; returns ``{"<kind>_s<seed>": run folder}``."""
    common = dict(_training_options(profile), dataset_dir=str(out.shards / "mixture_train"),
                  heldout_dir=str(out.shards / "mixture_heldout"), tokenizer=str(out.expanded_model))
    runs = {}
    for seed in profile.seeds:
        for kind in [k for k in RUN_KINDS if k in kinds]:
            clock.stage(f"continued training: {kind}, seed {seed} ({profile.train_steps} steps)")
            runs[f"{kind}_s{seed}"] = _continue_run(kind, seed, out.root, mixtures, profile.train_steps, common)
    return runs


def search_schedule(out: Layout, profile: Profile, options: DemoOptions, base: MixtureSpec) -> dict:
    """``chatflow search`` on the demo's split (:mod:`.split`): proxies train on its ``train`` part (the ablation's
    shards) and are scored on its ``valid`` part, the final re-runs on its ``test`` part, which the search never
    sees (the search itself refuses a test set sharing a document with either); proxies continue the expanded
    foundation like the ablation's runs; objective: the target language's groups' mean loss, subject to the English
    corpus loss staying within 0.02 nats of the reference's (the base mixture's schedule)."""
    from ..data.mixture import load_mixture
    from ..data.preprocess import preprocess
    from ..search.run import SearchOptions, run_search

    if not all((out.data / part).is_dir() for part in ("valid", "test")):
        raise ChatflowError(f"{out.data} was split by an older chatflow-plugin, without the valid/ and test/ parts "
                            f"the search needs: start the demo over with --force (or give another --output_dir)")
    spec = load_mixture(out.mixtures / "dynamic.json")
    for part in ("valid", "test"):
        if not _finished(f"the {part} shards", out.shards / f"mixture_{part}",
                         out.shards / f"mixture_{part}" / "manifest.json"):
            preprocess(spec.with_overrides(data_root=out.data / part), out.expanded_model,
                       out.shards / f"mixture_{part}", workers=0, force=True)
    target = groups_in(target_language(base), spec=base)
    english = groups_in(SOURCE_LANGUAGE, ("corpus",), base)
    options = SearchOptions(
        output_dir=str(out.root / "search"), dataset_dir=str(out.shards / "mixture_train"),
        heldout_dir=str(out.shards / "mixture_valid"), test_dir=str(out.shards / "mixture_test"),
        mixture=str(out.mixtures / "dynamic.json"), objective=f"mean({', '.join(target)})",
        constraint=[f"mean({', '.join(english)}) <= reference + 0.02"], model_path=str(out.expanded),
        tokenizer=str(out.expanded_model), train_steps=options.proxy_steps or profile.proxy_steps,
        final_train_steps=profile.train_steps, run_samples=profile.train_steps * profile.micro_batch_size,
        micro_batch_size=profile.micro_batch_size,
        learning_rate=profile.learning_rate, lr_scheduler="cosine_with_min_lr", warmup_steps=profile.warmup_steps,
        heldout_windows=profile.heldout_windows, bf16=profile.bf16, threads=profile.threads, workers=options.workers,
        seeds=len(profile.seeds), proxies=options.search_proxies or profile.search_proxies,
        ladder=options.ladder, ladder_model_path=str(out.expanded) if options.ladder else "",
        ladder_train_steps=2 * (options.proxy_steps or profile.proxy_steps))
    results = run_search(options)
    final = results["final"]["paired"]["chosen - reference"]["objective"] if results.get("final") else None
    return {"report": str(out.root / "search" / "report" / "report.md"),
            "chosen_mixture": str(out.root / "search" / "chosen_mixture.json"),
            "cv_objective_spearman": results["model"]["quality"]["objective"]["spearman"],
            "test_chosen_minus_reference": final,
            "ladder_spearman": results["ladder"]["spearman"] if results.get("ladder") else None}


def release_and_generate(out: Layout, dynamic_run: Path, generate: bool, clock: _Clock,
                         base: MixtureSpec | None = None) -> dict:
    """The dynamic run's final model copied to ``release/``; one answer per demo language (its first default
    prompt in the language table)."""
    from ..checkpoints.convert import HF_KIND

    if out.release.exists():
        shutil.rmtree(out.release)
    with atomic_directory(out.release, HF_KIND) as folder:     # whole or absent, like every model folder
        shutil.copytree(dynamic_run / "final", folder, dirs_exist_ok=True)
    if not generate:
        return {}
    clock.stage("generate with transformers")
    prompts = {code: get_language(code).prompt for code in (target_language(base), SOURCE_LANGUAGE)}
    generations = generate_answers(out.release, out.expanded_model, prompts)
    (out.root / "generations.json").write_text(json.dumps(generations, indent=2, ensure_ascii=False) + "\n",
                                              encoding="utf-8")
    return generations


def run_demo(options: DemoOptions) -> dict:
    """The whole ChatFlow recipe in miniature on a CPU: English tokenizer and foundation, vocabulary expansion
    with sub-token-mean rows, dynamic / static / two-stage / three-phase piecewise / adaptive continued training
    on data split before tokenization, a held-out report with plots, a HuggingFace release and generations.
    Prints and returns the report's path, the run time and the run folders."""
    profile = resolve_profile(options)
    base = base_mixture(options.mixture or None)
    if options.run_kinds and "dynamic" not in options.run_kinds:
        raise ChatflowError(f"--run_kinds {' '.join(options.run_kinds)}: dynamic must be among them (every other run "
                            f"is compared with it, and it is the one released)")
    with output_folder(options.output_dir, DEMO_KIND, replace=options.force,
                       advice="give the demo another --output_dir"):
        return _run_demo(options, profile, base)


def _run_demo(options: DemoOptions, profile: Profile, base: MixtureSpec) -> dict:
    pyplot()        # the report draws plots: without matplotlib, say so now rather than after the training
    target = get_language(target_language(base))
    out = _prepare(options, profile)
    if options.data_dir:
        data_dir = Path(options.data_dir)
    else:
        data_dir = base.data_root if options.mixture else default_data_dir()
    clock = _Clock()
    if options.foundation_cache and not any(path.exists() for path in _foundation_outputs(out)):
        clock.stage(f"the split, English tokenizer and foundation from the shared cache {options.foundation_cache}")
        cached_stages(options.foundation_cache, _foundation_key(data_dir, profile, base), FOUNDATION_STAGE_OUTPUTS,
                      lambda folder: _foundation_stages(Layout(folder), data_dir, profile, base, _Clock()),
                      out.root, say=_say)
    split = _foundation_stages(out, data_dir, profile, base, clock)
    if options.stop_after == "foundation":
        return _stopped(out, "foundation", clock)
    clock.stage(f"expand the vocabulary with {target.name} characters (sub-token mean rows)")
    expand_vocabulary(out, profile, base)
    clock.stage(f"tokenize the {len(base.groups)}-group mixture (train and held-out)")
    run_samples = profile.train_steps * profile.micro_batch_size
    t_grow = max(1.0, options.t_grow_fraction * run_samples)
    mixtures = run_mixtures(run_samples, t_grow, profile.seq_length, out.data / "train", base,
                            adaptive_every=profile.heldout_every * profile.micro_batch_size)
    tokenize_mixture(out, mixtures)
    if options.search:
        clock.stage("chatflow search: proxy runs, fitted model, chosen schedule, re-runs on the test split")
        found = search_schedule(out, profile, options, base)
        _say(f"done in {clock.total():.0f} s; search report: {found['report']}")
        print(json.dumps(found, indent=2))
        return found
    if options.stop_after == "mixture":
        return _stopped(out, "mixture", clock)
    runs = continued_training(out, profile, mixtures, clock, tuple(options.run_kinds or RUN_KINDS))
    clock.stage("release the dynamic run in HuggingFace format")
    generations = release_and_generate(out, runs[f"dynamic_s{profile.seeds[0]}"], not options.skip_generation, clock,
                                       base)
    clock.stage("write the report")
    clock.total()
    context = _report_context(out, profile, options, data_dir, split, mixtures, t_grow, run_samples,
                              clock.timings, generations, base)
    report = write_report(out.report, runs, context, base=base)
    _say(f"done in {clock.timings['total']:.0f} s; report: {report}")
    result = {"report": str(report), "seconds": clock.timings["total"], "runs": {k: str(v) for k, v in runs.items()}}
    print(json.dumps(result, indent=2))
    return result


# What stages 1-3 write, relative to the output folder: what --foundation_cache shares.
FOUNDATION_STAGE_OUTPUTS = ["data", "tokenizer/english.model", "mixtures/english_train.json",
                            "mixtures/english_heldout.json", "shards/english_train", "shards/english_heldout",
                            "foundation"]


def _foundation_outputs(out: Layout) -> list[Path]:
    """The files whose presence makes stages 1-3 reuse their outputs."""
    return [out.data / "split.json", out.english_model, out.foundation / "final" / "config.json"]


def _foundation_stages(out: Layout, data_dir: Path, profile: Profile, base: MixtureSpec, clock: _Clock) -> dict:
    """Stages 1-3 (each skipped when its output exists); returns ``split.json``."""
    clock.stage(f"split documents into train / held-out ({', '.join(base.group_names)} under {data_dir})")
    split = split_data(data_dir, out, profile, base)
    clock.stage("train the English tokenizer")
    english_tokenizer(out, profile, base)
    clock.stage("train the English foundation model")
    english_foundation(out, profile, base)
    return split


def _foundation_key(data_dir: Path, profile: Profile, base: MixtureSpec) -> dict:
    """What decides stages 1-3 (:func:`chatflow_plugin.demo.cache.foundation_key`): the data of every group, the
    groups' names, languages and first sources (the split and the English mixture), and the profile's settings
    but those of the later stages (new characters, continued-training steps, seeds)."""
    groups = [{"name": g.name, "language": g.language, "source": [g.sources[0].name, g.sources[0].kind,
                                                                  list(g.sources[0].fields or [])]}
              for g in base.groups]
    settings = {k: v for k, v in asdict(profile).items() if k not in ("new_chars", "train_steps", "seeds")}
    return foundation_key(data_dir, list(base.group_names), {"groups": groups, "profile": settings,
                                                             "split_seed": SPLIT_SEED,
                                                             "foundation_init_seed": FOUNDATION_INIT_SEED},
                          {"model_config": resource(profile.model_config)})


def _stopped(out: Layout, stage: str, clock: _Clock) -> dict:
    clock.total()
    _say(f"stopped after the {stage} stage ({clock.timings['total']:.0f} s); outputs in {out.root}")
    result = {"stopped_after": stage, "output_dir": str(out.root), "seconds": clock.timings["total"]}
    print(json.dumps(result, indent=2))
    return result


def _report_context(out: Layout, profile: Profile, options: DemoOptions, data_dir: Path, split: dict,
                    mixtures: dict, t_grow: float, run_samples: int, timings: dict, generations: dict,
                    base: MixtureSpec) -> dict:
    """What the report states about the demo; its paths follow chatflow_plugin.files' rule."""
    context_file = out.report / "context.json"

    def where(path: Path) -> str:
        return path_for_file(path, context_file, tree=out.root)

    return {"profile": "quick" if options.quick else "full", "data_dir": where(data_dir), "split": split,
            "profile_settings": {k: v for k, v in profile.__dict__.items() if k != "budget"},
            "t_grow_samples": t_grow, "run_samples": run_samples, "shares": mixtures["shares"],
            "instruction_share": mixtures["instruction_share"], "timings_seconds": timings,
            "tokenizer": {"english_pieces": _pieces(out.english_model), "expanded_pieces": _pieces(out.expanded_model)},
            "generations": generations, "release_dir": where(out.release), "bf16": profile.bf16,
            "foundation_dir": where(out.foundation),
            "base_mixture": where(Path(base.path).resolve()) if options.mixture else None,
            "target_language": target_language(base), "group_languages": group_languages(base)}


def _pieces(model: Path) -> int:
    return load_sentencepiece(model).vocab_size()


