"""Shared pieces of the search tests: a three-group mixture, its data split into train/valid/test shard sets by one
`chatflow preprocess --split` (the documented way), and a synthetic "trainer" whose validation loss is a mixing-law
function of the schedule (no training), run in place of `chatflow train`."""
from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np

from chatflow_plugin.data.mixture import load_mixture, parse_mixture
from chatflow_plugin.data.preprocess import preprocess
from chatflow_plugin.data.split import parse_split
from chatflow_plugin.search.proxies import RUN_RECORD
from chatflow_plugin.search.model import schedule_features

GROUPS = ["en", "zh", "inst"]


def mixture_data(data_root: str = "raw") -> dict:
    return {"name": "t", "seq_length": 32, "T_grow": 60, "seed": 3, "data_root": data_root,
            "groups": [{"name": g, "alpha": a, "beta": b, "language": lang,
                        "sources": [{"name": g, "kind": kind, "paths": [f"{g}.jsonl"]}]}
                       for g, a, b, lang, kind in [("en", 0.7, 0.3, "en", "corpus"), ("zh", 0.2, 0.5, "zh", "corpus"),
                                                   ("inst", 0.1, 0.2, "en", "instruction")]]}


def mixture_spec():
    return parse_mixture(mixture_data())


def mixing_law(features: dict) -> np.ndarray:
    """Validation loss per group: a power law in each group's exposure, the second half weighing as much as the
    whole run (what the model saw last matters): lower with more of the group, never below a floor."""
    m = 0.5 * features["exposure"] + 0.5 * features["late"]
    return np.array([2.0 + 0.5 * (m[0] + 0.05) ** -0.5, 3.0 + 0.8 * (m[1] + 0.05) ** -0.5,
                     2.5 + 0.3 * (m[2] + 0.05) ** -0.5])


def write_raw(root: Path, n_docs: int = 90, seed: int = 0) -> Path:
    """The mixture's three sources as JSONL under ``root`` (distinct random documents)."""
    from conftest import EN_WORDS, ZH_CHARS

    rng = random.Random(seed)
    root.mkdir(parents=True, exist_ok=True)
    records = {
        "en": [{"text": f"{i} " + " ".join(rng.choice(EN_WORDS) for _ in range(rng.randint(6, 20)))}
               for i in range(n_docs)],
        "zh": [{"text": f"{i}" + "".join(rng.choice(ZH_CHARS) for _ in range(rng.randint(8, 30)))}
               for i in range(n_docs)],
        "inst": [{"instruction": f"repeat {i} " + rng.choice(EN_WORDS), "input": "",
                  "output": " ".join(rng.choice(EN_WORDS) for _ in range(5))} for i in range(n_docs)]}
    for name, rows in records.items():
        (root / f"{name}.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows),
                                            encoding="utf-8")
    return root


def split_dataset(root: Path, spm_model: Path, split: str = "train:0.6,valid:0.2,test:0.2",
                  n_docs: int = 90) -> dict[str, Path]:
    """The mixture's data in one `chatflow preprocess --split`: ``{part: shard directory}``, and ``mixture``: the
    mixture file (its data_root the raw data)."""
    raw = write_raw(root / "raw", n_docs)
    mixture = root / "mixture.json"
    mixture.write_text(json.dumps(mixture_data(str(raw))), encoding="utf-8")
    preprocess(load_mixture(mixture), spm_model, root / "data", workers=1, split=parse_split(split))
    return {**{name: root / "data" / name for name in parse_split(split).names}, "mixture": mixture}


def synthetic_runner(calls: list, law=None):
    """A stand-in for proxies.run_all: writes each unfinished run's folder as `chatflow train` would (the run
    record, the final record, log.jsonl with the held-out losses at the last step), losses from :func:`mixing_law`
    (or ``law``; plus a small seed-dependent offset), and records the runs it "trained" in ``calls``."""
    law = law or mixing_law

    def run_all(runs, workers, logs, say):
        for run in runs:
            if run.finished:
                continue
            calls.append(run.name)
            n = run.settings.run_samples
            losses = law(schedule_features(load_mixture(run.mixture).schedule(), n))
            losses = losses + 0.002 * np.sin(run.seed + np.arange(len(losses)))
            run.folder.mkdir(parents=True, exist_ok=True)
            steps = run.settings.train_steps
            (run.folder / RUN_RECORD).write_text(json.dumps({
                "options": dict(run.expected(), threads=run.settings.threads), "world_size": 1,
                "global_batch": run.settings.global_batch}))
            records = [{"kind": "heldout", "step": steps, "samples": n,
                        **{f"heldout_{g}": float(v) for g, v in zip(GROUPS, losses)}},
                       {"kind": "summary", "step": steps, "steps": steps, "seconds_this_session": 1.0}]
            (run.folder / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
            (run.folder / "final").mkdir(exist_ok=True)
            (run.folder / "final" / "chatflow_train.json").write_text(json.dumps({"steps": steps}))

    return run_all
