"""HF backend: the Trainer reads the sampler's order, resumes exactly, splits ranks disjointly, learns."""
from __future__ import annotations

import csv
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("transformers")
pytest.importorskip("accelerate")

from chatflow_plugin.data.batches import MixtureDataset  # noqa: E402
from chatflow_plugin.errors import ChatflowError  # noqa: E402
from chatflow_plugin.hosts.hf.data import MixtureTorchDataset, RankBatchSampler, collate_windows  # noqa: E402
from chatflow_plugin.cli import main as chatflow_main  # noqa: E402
from chatflow_plugin.hosts.hf.train import TrainOptions, train  # noqa: E402
from chatflow_plugin.data.mixture import load_mixture  # noqa: E402
from chatflow_plugin.data.preprocess import preprocess  # noqa: E402
from chatflow_plugin.data.sampler import rank_indices  # noqa: E402
from chatflow_plugin.data.shards import ShardSet  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
TINY_CONFIG = ROOT / "models" / "hf" / "demo_tiny.json"
EN = "the river runs past the old school and the teacher reads a book about music".split()
ZH = "我们的老师在学校里读一本关于音乐和历史的书今天天气很好"


def _write_jsonl(path: Path, records: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")


def make_dataset(root: Path, spm_model: Path, seq_length: int = 32, n_docs: int = 120, seed: int = 0,
                 name: str = "data") -> Path:
    """Three groups (English, Chinese, English instructions) of tiny synthetic documents -> shards."""
    rng = random.Random(seed)
    raw = root / f"{name}_raw"
    _write_jsonl(raw / "en.jsonl", [{"text": " ".join(rng.choice(EN) for _ in range(rng.randint(6, 20)))}
                                    for _ in range(n_docs)])
    _write_jsonl(raw / "zh.jsonl", [{"text": "".join(rng.choice(ZH) for _ in range(rng.randint(8, 30)))}
                                    for _ in range(n_docs)])
    _write_jsonl(raw / "inst.jsonl", [{"instruction": "repeat " + rng.choice(EN), "input": "",
                                       "output": " ".join(rng.choice(EN) for _ in range(5))} for _ in range(n_docs)])
    mixture = {"name": "t", "seq_length": seq_length, "T_grow": 40, "seed": 3, "data_root": str(raw),
               "groups": [
                   {"name": "en", "alpha": 0.7, "beta": 0.3, "sources": [{"name": "en", "kind": "corpus", "paths": ["en.jsonl"]}]},
                   {"name": "zh", "alpha": 0.2, "beta": 0.5, "sources": [{"name": "zh", "kind": "corpus", "paths": ["zh.jsonl"]}]},
                   {"name": "inst", "alpha": 0.1, "beta": 0.2, "sources": [{"name": "inst", "kind": "instruction", "paths": ["inst.jsonl"]}]}]}
    path = root / f"{name}_mixture.json"
    path.write_text(json.dumps(mixture), encoding="utf-8")
    out = root / name
    preprocess(load_mixture(path), spm_model, out, workers=1)
    return out


@pytest.fixture(scope="module")
def dataset(tmp_path_factory, spm_model) -> Path:
    return make_dataset(tmp_path_factory.mktemp("hfdata"), spm_model)


@pytest.fixture(scope="module")
def heldout(tmp_path_factory, spm_model) -> Path:
    return make_dataset(tmp_path_factory.mktemp("hfheld"), spm_model, n_docs=30, seed=99, name="held")


def _options(dataset: Path, out: Path, **kw) -> TrainOptions:
    base = dict(dataset_dir=str(dataset), output_dir=str(out), model_config=str(TINY_CONFIG), train_steps=6,
                micro_batch_size=2, gradient_accumulation_steps=2, learning_rate=3e-3, lr_scheduler="cosine",
                log_every=1, warmup_steps=0, threads=1, quiet=True)       # a short run's own schedule
    base.update(kw)
    return TrainOptions(**base)


def _read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _tree(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (relative path -> bytes)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


TOKENIZER_FILES = ("tokenizer.model", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


def _record_samples(monkeypatch) -> list[list[int]]:
    """The global sample indices of every micro-batch the trainer reads from now on (appended as read)."""
    from chatflow_plugin.hosts.hf import data as hf_data
    seen: list[list[int]] = []
    original = hf_data.collate_windows

    def recording(samples):
        batch = original(samples)
        seen.append(batch["t"].tolist())
        return batch

    monkeypatch.setattr("chatflow_plugin.hosts.hf.train.collate_windows", recording)
    return seen


def stop_after(monkeypatch, step: int) -> None:
    """The next train() stops after optimizer step ``step`` (as a kill would, minus the lost work)."""
    import transformers

    from chatflow_plugin.hosts.hf import train as module

    class Stop(transformers.TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == step:
                control.should_training_stop = True

    make = module._make_trainer_class

    def with_stop():
        cls, cb = make()

        class Stopping(cls):
            def __init__(self, *a, **k):
                super().__init__(*a, **k)
                self.add_callback(Stop())
        monkeypatch.setattr(module, "_make_trainer_class", make)     # one run only
        return Stopping, cb

    monkeypatch.setattr(module, "_make_trainer_class", with_stop)


# --- data plumbing -------------------------------------------------------------------------------

def test_rank_batch_sampler_is_rank_indices_and_starts_where_told(dataset):
    sampler = RankBatchSampler(3, 5, rank=1, world_size=2)
    assert len(sampler) == 5
    assert list(sampler) == [rank_indices(i, 3, 1, 2).tolist() for i in range(5)]
    position = {"start": 3}
    resumed = RankBatchSampler(3, 5, rank=0, world_size=2, start_micro_batch=lambda: position["start"])
    assert list(resumed) == [rank_indices(i, 3, 0, 2).tolist() for i in (3, 4)]
    with pytest.raises(ValueError):
        RankBatchSampler(3, 5, rank=2, world_size=2)


def test_collated_batch_matches_mixture_batch(dataset):
    mixture = MixtureDataset(ShardSet(dataset))
    torch_data = MixtureTorchDataset(mixture, 100)
    assert len(torch_data) == 100
    batch = collate_windows(torch_data.__getitems__([5, 6, 7]))
    ref = mixture.batch([5, 6, 7])
    assert batch["input_ids"].tolist() == ref["tokens"][:, :-1].tolist()
    assert batch["targets"].tolist() == ref["tokens"][:, 1:].tolist()
    assert batch["loss_mask"].tolist() == ref["loss_mask"].tolist()
    assert batch["group"].tolist() == ref["group"].tolist()
    single = torch_data[6]
    assert single["tokens"].tolist() == ref["tokens"][1].tolist()


# --- training --------------------------------------------------------------------------------------

def test_training_lowers_loss_and_writes_logs_and_model(dataset, heldout, tmp_path, spm_model):
    out = tmp_path / "run"
    summary = train(_options(dataset, out, train_steps=30, heldout_dir=str(heldout), heldout_every=15,
                             heldout_windows=8, tokenizer=str(spm_model)))
    records = _read_jsonl(out / "log.jsonl")
    steps = [r for r in records if r["kind"] == "train"]
    assert [r["step"] for r in steps] == list(range(1, 31))
    first, last = np.mean([r["loss"] for r in steps[:3]]), np.mean([r["loss"] for r in steps[-3:]])
    assert last < first - 0.5, (first, last)
    # per-group losses, realised mixture and token counts are logged
    for r in steps:
        assert r["tokens"] == r["samples"] * 32 and r["samples"] == r["step"] * 4
        assert abs(sum(r[f"mix_{g}"] for g in ("en", "zh", "inst")) - 1) < 1e-9
        assert r["learning_rate"] is not None
    assert any(r.get("loss_zh") is not None for r in steps)
    held = [r for r in records if r["kind"] == "heldout"]
    assert [r["step"] for r in held] == [0, 15, 30]
    assert all(held[-1][f"heldout_{g}"] < held[0][f"heldout_{g}"] for g in ("en", "zh", "inst"))
    with open(out / "train_log.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 30 and {"loss_en", "mix_zh", "tokens", "learning_rate"} <= set(rows[0])
    with open(out / "heldout_log.csv", newline="") as handle:
        assert len(list(csv.DictReader(handle))) == 3
    assert summary["samples"] == 120 and sum(summary["group_samples"].values()) == 120
    # the final model and tokenizer load back with transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer
    model = AutoModelForCausalLM.from_pretrained(out / "final")
    tok = AutoTokenizer.from_pretrained(out / "final")
    assert model.get_input_embeddings().weight.shape[0] == len(tok) == 600
    # the saved tokenizer carries the model's context length, not the 32-token training windows
    assert tok.model_max_length == model.config.max_position_embeddings != 32
    assert not any(p.name.startswith(".final") for p in out.iterdir())


def test_resume_reads_exactly_the_samples_of_an_uninterrupted_run(dataset, tmp_path, monkeypatch):
    """Record each micro-batch's global indices; an interrupted + resumed run equals a straight one."""
    seen = _record_samples(monkeypatch)
    straight = tmp_path / "straight"
    train(_options(dataset, straight, train_steps=6, save_every=3))
    uninterrupted = list(seen)
    assert uninterrupted == [rank_indices(i, 2, 0, 1).tolist() for i in range(12)]

    # Interrupt after step 3 (a checkpoint exists at step 3), then resume to step 6.
    seen.clear()
    interrupted = tmp_path / "interrupted"
    stop_after(monkeypatch, 3)
    stopped = train(_options(dataset, interrupted, train_steps=6, save_every=3))
    assert stopped["stopped_early_at"] == 3
    assert not (interrupted / "final").exists() and not (interrupted / "train_summary.json").exists()
    first_part = list(seen)
    seen.clear()
    train(_options(dataset, interrupted, train_steps=6, save_every=3))
    assert first_part + seen == uninterrupted
    # the log holds one history, steps 1..6, with the same losses as the straight run at resume
    steps = [r["step"] for r in _read_jsonl(interrupted / "log.jsonl") if r["kind"] == "train"]
    assert steps == [1, 2, 3, 4, 5, 6]
    a = [r["loss"] for r in _read_jsonl(straight / "log.jsonl") if r["kind"] == "train"]
    b = [r["loss"] for r in _read_jsonl(interrupted / "log.jsonl") if r["kind"] == "train"]
    assert np.allclose(a, b, rtol=1e-4, atol=1e-4)


def test_checkpoints_hold_the_tokenizer_and_load_as_they_are(dataset, tmp_path, spm_model):
    """Every checkpoint-N/ is a complete HF model folder: the final model's tokenizer files, tokens seen."""
    import sentencepiece as spm
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path / "run"
    train(_options(dataset, out, train_steps=4, save_every=2, save_total_limit=5))   # the dataset's tokenizer
    sp = spm.SentencePieceProcessor(model_file=str(spm_model))
    final = _tree(out / "final")
    for step in (2, 4):
        checkpoint = out / f"checkpoint-{step}"
        for name in TOKENIZER_FILES:
            assert (checkpoint / name).read_bytes() == final[name], (step, name)
        assert not list(checkpoint.glob(".*.tmp"))
        tok = AutoTokenizer.from_pretrained(checkpoint, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(checkpoint, local_files_only=True)
        text = "the teacher reads 我们的老师在学校"
        assert tok(text)["input_ids"] == [sp.bos_id()] + sp.encode(text)
        assert model.get_input_embeddings().weight.shape[0] == len(tok) == 600
        state = json.loads((checkpoint / "trainer_state.json").read_text())
        assert state["num_input_tokens_seen"] == step * 4 * 32   # = the log's tokens at that step
    assert (out / "checkpoint-4" / "model.safetensors").read_bytes() == final["model.safetensors"]


def test_tokenizer_from_the_start_model_when_the_datasets_is_gone(tmp_path, spm_model, capsys):
    """The dataset's sentencepiece file moved away: the start model's identical tokenizer.model is used;
    with neither, the run says at once that its checkpoints will hold no tokenizer."""
    import shutil

    moved = tmp_path / "spm" / "moved.model"
    moved.parent.mkdir()
    shutil.copyfile(spm_model, moved)
    data = make_dataset(tmp_path, moved, n_docs=30)
    first = tmp_path / "first"
    train(_options(data, first, train_steps=1))
    moved.unlink()
    second = tmp_path / "second"
    train(_options(data, second, model_config="", model_path=str(first / "final"), train_steps=2, save_every=1))
    assert "no tokenizer to save" not in capsys.readouterr().err
    for name in TOKENIZER_FILES:
        assert (second / "checkpoint-1" / name).read_bytes() == (first / "final" / name).read_bytes()
    train(_options(data, tmp_path / "third", train_steps=1))
    assert "warning: no tokenizer to save" in capsys.readouterr().err
    assert not (tmp_path / "third" / "checkpoint-1" / "tokenizer.model").exists()


def test_tokenizer_files_are_written_before_the_model(dataset, tmp_path, monkeypatch):
    """A save killed while writing the weights leaves a folder that has its tokenizer (or no config.json)."""
    from transformers import PreTrainedModel

    seen = []
    original = PreTrainedModel.save_pretrained

    def recording(self, directory, *args, **kwargs):
        seen.append(sorted(p.name for p in Path(directory).iterdir()))
        return original(self, directory, *args, **kwargs)

    monkeypatch.setattr(PreTrainedModel, "save_pretrained", recording)
    train(_options(dataset, tmp_path / "run", train_steps=2, save_every=1))
    assert len(seen) == 3   # checkpoint-1, checkpoint-2, final
    assert all(set(TOKENIZER_FILES) <= set(names) and "config.json" not in names for names in seen), seen


def test_rerun_of_a_finished_run_leaves_it_alone(dataset, tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["--dataset_dir", str(dataset), "--output_dir", str(out), "--model_config", str(TINY_CONFIG),
            "--train_steps", "4", "--save_every", "2", "--micro_batch_size", "2", "--gradient_accumulation_steps",
            "2", "--log_every", "1", "--threads", "1", "--learning_rate", "3e-3", "--lr_scheduler", "cosine",
            "--warmup_steps", "0", "--quiet"]
    assert chatflow_main(["train", *argv]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["train_loss"] > 0
    before = _tree(out)
    assert chatflow_main(["train", *argv, "--threads", "2"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines == [f"{out}: finished (4 steps); the final model is {out / 'final'}"]
    assert _tree(out) == before   # train_summary.json, log.jsonl, the CSVs, final/, checkpoints: byte-identical
    # a kill between final/ and the records: the re-run completes them from final/chatflow_train.json
    (out / "train_summary.json").unlink()
    log = (out / "log.jsonl").read_text().splitlines()
    (out / "log.jsonl").write_text("\n".join(log[:-1]) + "\n")
    assert train(_options(dataset, out, train_steps=4, save_every=2))["already_finished"]
    assert _tree(out) == before
    # fewer steps than finished, or a fresh start over it: refused
    with pytest.raises(ChatflowError, match="finished run of 4 steps; --train_steps 3 asks for fewer"):
        train(_options(dataset, out, train_steps=3))
    with pytest.raises(ChatflowError, match="already holds checkpoints"):
        train(_options(dataset, out, train_steps=4, resume="no"))
    assert _tree(out) == before


def test_more_steps_continue_a_finished_run(dataset, tmp_path, monkeypatch, capsys):
    """Asking a finished run for more steps continues it from its last checkpoint: the next samples in
    order, the learning-rate schedule recomputed over the new length from the first resumed step."""
    import math

    out = tmp_path / "run"
    train(_options(dataset, out, train_steps=4, save_every=2))
    first = [line for line in (out / "log.jsonl").read_text().splitlines() if '"summary"' not in line]
    seen = _record_samples(monkeypatch)
    summary = train(_options(dataset, out, train_steps=6, save_every=2))
    assert "continuing from step 4 to 6 (the run was set for 4)" in capsys.readouterr().err
    assert summary["steps"] == 6 and summary["resumed_from"] == str(out / "checkpoint-4")
    assert seen == [rank_indices(i, 2, 0, 1).tolist() for i in range(8, 12)]
    records = _read_jsonl(out / "log.jsonl")
    assert (out / "log.jsonl").read_text().splitlines()[:4] == first   # the first 4 steps' records kept
    train_records = [r for r in records if r["kind"] == "train"]
    assert [r["step"] for r in train_records] == [1, 2, 3, 4, 5, 6]
    # step k runs at the cosine rate of step k-1 of 6 (not the 4-step schedule's last rate, 0)
    for r in train_records[4:]:
        assert r["learning_rate"] == pytest.approx(3e-3 * 0.5 * (1 + math.cos(math.pi * (r["step"] - 1) / 6)))
    assert json.loads((out / "train_summary.json").read_text())["steps"] == 6
    assert json.loads((out / "final" / "chatflow_train.json").read_text())["steps"] == 6
    assert json.loads((out / "chatflow_run.json").read_text())["train_steps"] == 6


def test_resume_refuses_a_changed_global_batch_unless_allowed(dataset, tmp_path):
    out = tmp_path / "run"
    train(_options(dataset, out, train_steps=2, save_every=1))
    with pytest.raises(ChatflowError, match=r"global_batch: 4 -> 6.*--allow_change global_batch"):
        train(_options(dataset, out, train_steps=3, micro_batch_size=3))
    with pytest.raises(ChatflowError, match="already holds checkpoints"):
        train(_options(dataset, out, train_steps=2, resume="no"))
    with pytest.raises(ChatflowError, match=r"--allow_change seed: not a setting a resumed run may change \(those are: mixture, global_batch, loss"):
        train(_options(dataset, out, train_steps=3, allow_change=["seed"]))


def test_response_only_loss_masks_prompts(dataset, tmp_path):
    mixture_all = MixtureDataset(ShardSet(dataset))
    mixture_resp = MixtureDataset(ShardSet(dataset), response_only=True)
    idx = np.arange(64)
    all_mask, resp_mask = mixture_all.batch(idx)["loss_mask"], mixture_resp.batch(idx)["loss_mask"]
    inst = mixture_all.batch(idx)["group"] == 2
    assert resp_mask[inst].sum() < all_mask[inst].sum()
    summary = train(_options(dataset, tmp_path / "resp", train_steps=2, loss="response_only"))
    assert summary["steps"] == 2


def test_bad_options_are_clear_errors(dataset, tmp_path, spm_model):
    with pytest.raises(ChatflowError, match="exactly one"):
        train(_options(dataset, tmp_path / "a", model_config=""))
    with pytest.raises(ChatflowError, match="train_steps"):
        train(_options(dataset, tmp_path / "b", train_steps=0))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ChatflowError, match="not a HuggingFace model directory"):
        train(_options(dataset, tmp_path / "c", model_config="", model_path=str(tmp_path / "empty")))
    with pytest.raises(ChatflowError, match="complete chatflow dataset"):
        train(_options(tmp_path / "empty", tmp_path / "d"))
    with pytest.raises(ChatflowError, match="is inside .*empty, an input folder of this run"):
        train(_options(tmp_path / "empty", tmp_path / "empty" / "run"))


def test_defaults_are_llama2s_and_a_warmup_outlasting_the_run_is_said(dataset, tmp_path, capsys):
    from chatflow_plugin.hosts.hf.train import _training_arguments
    from chatflow_plugin.hosts.hyperparameters import LLAMA2
    defaults = TrainOptions(dataset_dir="d", output_dir="o")
    assert (defaults.learning_rate, defaults.lr_scheduler, defaults.warmup_steps, defaults.weight_decay,
            defaults.adam_beta2, defaults.adam_epsilon, defaults.max_grad_norm) == \
        (3e-4, "cosine_with_min_lr", 2000, 0.1, 0.95, 1e-5, 1.0) == \
        (LLAMA2.learning_rate, LLAMA2.lr_scheduler, LLAMA2.warmup_steps, LLAMA2.weight_decay, LLAMA2.adam_beta2,
         LLAMA2.adam_epsilon, LLAMA2.max_grad_norm)
    args = _training_arguments(defaults, tmp_path, 1)
    assert (args.adam_beta1, args.adam_beta2, args.adam_epsilon, args.weight_decay, args.max_grad_norm,
            args.warmup_steps, args.learning_rate) == (0.9, 0.95, 1e-5, 0.1, 1.0, 2000, 3e-4)
    assert args.lr_scheduler_kwargs == {"min_lr_rate": 0.1}
    fraction = TrainOptions(dataset_dir="d", output_dir="o", train_steps=600, warmup_steps=0.05)
    assert _training_arguments(fraction, tmp_path, 1).warmup_steps == 30         # a value below 1: of the run
    for bad, message in ((-1, "must be 0 or more"), (2.5, "give whole optimizer steps")):
        with pytest.raises(ChatflowError, match=message):
            train(_options(dataset, tmp_path / "bad", warmup_steps=bad))
    # LLaMA-2's 2,000 warm-up steps in a 2-step run: it runs, and says so
    train(_options(dataset, tmp_path / "short", train_steps=2, warmup_steps=2000))
    assert "warning: the warm-up (2,000 optimizer steps) is not shorter than the run (2 steps)" in \
        capsys.readouterr().err
    assert json.loads((tmp_path / "short" / "chatflow_run.json").read_text())["adam_epsilon"] == 1e-5


def test_continue_from_pretrained_directory_and_cli(dataset, tmp_path, capsys):
    first = tmp_path / "first"
    train(_options(dataset, first, train_steps=2))
    code = chatflow_main(["train", "--dataset_dir", str(dataset), "--output_dir", str(tmp_path / "second"),
                     "--model_path", str(first / "final"), "--train_steps", "2", "--micro_batch_size", "2",
                     "--threads", "1", "--quiet"])
    assert code == 0
    printed = capsys.readouterr().out    # the summary JSON, after whatever libraries log on stdout (DeepSpeed)
    assert json.loads(printed[printed.index("{\n"):])["steps"] == 2


def torchrun_train(script: Path, args: list[str], nproc: int, stop_at: int = 0) -> None:
    """``chatflow train`` under torchrun through ``script`` (:data:`RECORD_SCRIPT`), stopped after ``stop_at``."""
    import os
    import socket
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(root), STOP_AT=str(stop_at))
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = str(sock.getsockname()[1])
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc), "--master_port", port,
           str(script), *args]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]


# Records the global sample indices each rank reads (seen_<rank>_<micro-batches>.json in --output_dir); STOP_AT
# stops training after that optimizer step, as a kill would.
RECORD_SCRIPT = (
    "import json, os, sys\n"
    "from chatflow_plugin.hosts.hf import train as hf_train\n"
    "orig = hf_train.collate_windows\n"
    "seen = []\n"
    "def rec(samples):\n"
    "    b = orig(samples); seen.append(b['t'].tolist()); return b\n"
    "hf_train.collate_windows = rec\n"
    "stop = int(os.environ.get('STOP_AT', '0'))\n"
    "if stop:\n"
    "    import transformers\n"
    "    class Stop(transformers.TrainerCallback):\n"
    "        def on_step_end(self, args, state, control, **kw):\n"
    "            control.should_training_stop = state.global_step == stop\n"
    "    make = hf_train._make_trainer_class\n"
    "    def with_stop():\n"
    "        cls, cb = make()\n"
    "        class Stopping(cls):\n"
    "            def __init__(self, *a, **k):\n"
    "                super().__init__(*a, **k); self.add_callback(Stop())\n"
    "        return Stopping, cb\n"
    "    hf_train._make_trainer_class = with_stop\n"
    "from chatflow_plugin.cli import main\n"
    "code = main(['train', *sys.argv[1:]])\n"
    "out = os.path.join(sys.argv[sys.argv.index('--output_dir') + 1], f\"seen_{os.environ['RANK']}_{len(seen)}.json\")\n"
    "json.dump(seen, open(out, 'w'))\n"
    "sys.exit(code)\n")


@pytest.mark.slow
def test_two_cpu_processes_read_disjoint_samples(dataset, heldout, tmp_path):
    """torchrun --nproc_per_node 2 (gloo): both ranks together read exactly the single-process order."""
    script = tmp_path / "record.py"
    script.write_text(RECORD_SCRIPT, encoding="utf-8")
    out = tmp_path / "ddp"
    torchrun_train(script, ["--dataset_dir", str(dataset), "--output_dir", str(out), "--model_config", str(TINY_CONFIG),
                            "--train_steps", "3", "--micro_batch_size", "2", "--gradient_accumulation_steps", "2",
                            "--log_every", "1", "--threads", "1", "--quiet", "--heldout_dir", str(heldout),
                            "--heldout_windows", "4"], 2)
    rank0 = json.loads((out / "seen_0_6.json").read_text())
    rank1 = json.loads((out / "seen_1_6.json").read_text())
    assert rank0 == [rank_indices(i, 2, 0, 2).tolist() for i in range(6)]
    assert rank1 == [rank_indices(i, 2, 1, 2).tolist() for i in range(6)]
    flat0, flat1 = sum(rank0, []), sum(rank1, [])
    assert not set(flat0) & set(flat1)
    assert sorted(flat0 + flat1) == list(range(24))
    records = [r for r in _read_jsonl(out / "log.jsonl") if r["kind"] == "train"]
    assert [r["samples"] for r in records] == [8, 16, 24]
    assert all(r["loss"] is not None for r in records)
    assert all(r.get(f"loss_{g}") is not None or r[f"mix_{g}"] == 0 for r in records for g in ("en",))
    held = [r for r in _read_jsonl(out / "log.jsonl") if r["kind"] == "heldout"]
    assert [r["step"] for r in held] == [0, 3]      # evaluated on every rank, logged once by rank 0
    for name in TOKENIZER_FILES:                    # written by rank 0 into the checkpoint
        assert (out / "checkpoint-3" / name).read_bytes() == (out / "final" / name).read_bytes()


def test_quiet_silences_the_libraries_but_says_that_the_run_resumed(dataset, tmp_path):
    import shutil

    out = tmp_path / "run"
    argv = [sys.executable, "-m", "chatflow_plugin.cli", "train", "--dataset_dir", str(dataset), "--output_dir",
            str(out), "--model_config", str(TINY_CONFIG), "--train_steps", "4", "--save_every", "2",
            "--micro_batch_size", "2", "--log_every", "1", "--threads", "1", "--warmup_steps", "0", "--quiet"]
    first = subprocess.run(argv, capture_output=True, text=True)
    assert first.returncode == 0, first.stderr
    shutil.rmtree(out / "final")                 # as a kill after the step-2 checkpoint would leave it
    shutil.rmtree(out / "checkpoint-4")
    (out / "train_summary.json").unlink()
    again = subprocess.run(argv, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    for done in (first, again):                  # no progress bar (tqdm's, transformers' "Writing model shards")
        assert not any(mark in done.stderr for mark in ("\r", "it/s", "%|", "█", "Writing model")), done.stderr
    assert f"{out}: resuming from {out / 'checkpoint-2'} (step 2)" in again.stderr.splitlines()
    assert "resuming" not in first.stderr
    assert json.loads((out / "train_summary.json").read_text())["resumed_from"] == str(out / "checkpoint-2")
