"""Against the real TencentPretrain (TENCENTPRETRAIN_HOME): registration, the target, and the project's
``preprocess.py`` / ``pretrain.py`` run end to end on a CPU (plain and DeepSpeed ZeRO-1 via torchrun):
loss goes down, per-group loss is logged, the final checkpoint loads in the host's model, a resumed
run continues the same sample sequence, two data-parallel ranks read disjoint halves of it."""
from __future__ import annotations

import json
import os
import random
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytestmark = [pytest.mark.host, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "models" / "llama2" / "tiny_config.json"
CPU_DS = ROOT / "models" / "deepspeed_cpu_config.json"
EN = "the river runs past the old school and the teacher reads a book about music and history".split()
ZH = "我们的老师在学校里读一本关于音乐和历史的书今天天气很好山水城市"
REPORT = re.compile(r"\|\s+(\d+)/\s*(\d+) steps\|\s+([\d.]+) tokens/s\| loss\s+([\d.]+)(.*)")


@pytest.fixture(scope="module")
def home() -> Path:
    from conftest import host_home
    found = host_home()
    if found is None:
        pytest.skip("needs TencentPretrain: set TENCENTPRETRAIN_HOME")
    return found


def _jsonl(path: Path, records) -> None:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, spm_model):
    """Four groups of tiny documents (and a blank JSONL line, which the host's own reader crashes on)."""
    root = tmp_path_factory.mktemp("tp_host")
    rng = random.Random(1)
    data = root / "data"
    data.mkdir()
    en = lambda: " ".join(rng.choice(EN) for _ in range(rng.randint(8, 24))) + "."  # noqa: E731
    zh = lambda: "".join(rng.choice(ZH) for _ in range(rng.randint(10, 30))) + "。"  # noqa: E731
    _jsonl(data / "en.jsonl", [{"text": en()} for _ in range(200)])
    with open(data / "en.jsonl", "a", encoding="utf-8") as handle:
        handle.write("\n" + json.dumps({"text": en()}) + "\n")
    _jsonl(data / "zh.jsonl", [{"text": zh()} for _ in range(200)])
    _jsonl(data / "par.jsonl", [{"en": en(), "zh": zh()} for _ in range(120)])
    _jsonl(data / "inst.jsonl", [{"instruction": "translate: " + en(), "output": zh()} for _ in range(120)])
    mixture = {"name": "host_test", "seq_length": 64, "T_grow": 300, "seed": 2, "data_root": "data", "groups": [
        {"name": "en_corpus", "alpha": 0.6, "beta": 0.2, "sources": [{"name": "en", "kind": "corpus", "paths": ["en.jsonl"]}]},
        {"name": "zh_corpus", "alpha": 0.1, "beta": 0.5, "sources": [{"name": "zh", "kind": "corpus", "paths": ["zh.jsonl"]}]},
        {"name": "parallel", "alpha": 0.2, "beta": 0.1, "sources": [{"name": "par", "kind": "parallel", "paths": ["par.jsonl"]}]},
        {"name": "instructions", "alpha": 0.1, "beta": 0.2, "sources": [{"name": "inst", "kind": "instruction", "paths": ["inst.jsonl"]}]}]}
    (root / "mixture.json").write_text(json.dumps(mixture), encoding="utf-8")
    shutil.copy(spm_model, root / "spm.model")
    (root / "cwd").mkdir()                   # scripts run from here: neither the project nor the host
    return root


def _env(home: Path) -> dict:
    env = dict(os.environ, TENCENTPRETRAIN_HOME=str(home), PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
    env.pop("WORLD_SIZE", None)
    return env


def _run(cmd, cwd, env, timeout=600) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{cmd}\nSTDOUT:\n{proc.stdout[-3000:]}\nSTDERR:\n{proc.stderr[-6000:]}"
    return proc


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _reports(text: str) -> list[dict]:
    out = []
    for m in REPORT.finditer(text):
        groups = dict(re.findall(r"(\w+) ([\d.]+|-)", m.group(5).split("| p:")[0].replace("| group loss:", "")))
        out.append({"step": int(m.group(1)), "tokens_per_s": float(m.group(3)), "loss": float(m.group(4)),
                    "groups": groups, "tail": m.group(5)})
    return out


@pytest.fixture(scope="module")
def dataset(corpus, home):
    """Built by the project's preprocess.py, from another directory, with --name=value spellings."""
    proc = _run([sys.executable, str(ROOT / "preprocess.py"), "--mixture_config=../mixture.json",
                 "--spm_model_path", "../spm.model", "--dataset_path", "../ds", "--data_processor", "dynamic_mixture",
                 "--processes_num", "2"], cwd=corpus / "cwd", env=_env(home))
    assert "skipped" in proc.stdout and "blank line" in proc.stdout
    assert sorted(os.listdir(corpus / "cwd")) == []          # nothing left in the working directory
    return corpus / "ds"


# -- in-process: registry and target ----------------------------------------------------------

@pytest.fixture(scope="module")
def host(home):
    from chatflow_plugin import register
    register()
    return register()


def test_register_is_idempotent_and_fills_every_registry(host):
    import tencentpretrain.targets as targets
    import tencentpretrain.trainer as trainer
    import tencentpretrain.utils as utils
    from chatflow_plugin.hosts.tencentpretrain import classes
    assert utils.str2dataset["dynamic_mixture"] is classes.ChatflowMixtureDataset
    assert utils.str2dataloader["dynamic_mixture"] is classes.ChatflowMixtureDataloader
    assert trainer.str2trainer["dynamic_mixture"] is classes.ChatflowTrainer
    assert targets.str2target["chatflow_instruction"] is classes.ChatflowInstructionTarget
    import tencentpretrain.model_builder as builder
    assert builder.str2target is targets.str2target                    # shared dicts, mutated in place
    assert trainer.str2dataloader is utils.str2dataloader
    assert len(host) == 4 and targets.str2target["lm"].__name__ == "LmTarget"


def _target_args(**kw):
    from argparse import Namespace
    base = dict(hidden_size=16, tensor_model_parallel_size=1, pipeline_model_parallel_size=1,
                prefix_lm_loss=False, has_lmtarget_bias=False, tie_weights=False)
    base.update(kw)
    return Namespace(**base)


def test_chatflow_target_equals_the_stock_loss_and_splits_it_by_row(host):
    from tencentpretrain.targets.lm_target import LmTarget
    from chatflow_plugin.hosts.tencentpretrain.classes import ChatflowInstructionTarget

    torch.manual_seed(0)
    args = _target_args()
    stock = LmTarget(args, 50)
    ours = ChatflowInstructionTarget(args, 50)
    ours.load_state_dict(stock.state_dict())
    memory, tgt = torch.randn(3, 7, 16), torch.randint(0, 50, (3, 7))
    seg = torch.ones(3, 7, dtype=torch.long)
    seg[1, :4] = 0
    seg[2] = 0
    assert torch.allclose(ours(memory, tgt, seg), stock(memory, tgt, seg))       # scalar unless asked
    ours.report_rows = True
    loss, row_loss, row_tokens = ours(memory, tgt, seg)
    assert torch.allclose(loss, stock(memory, tgt, seg))
    assert row_tokens.tolist() == [7, 3, 0]
    assert torch.allclose(row_loss.sum() / row_tokens.sum(), loss)
    one = seg.clone()
    one[1:] = 0
    assert torch.allclose(row_loss[0] / 7, stock(memory, tgt, one))


def test_adopt_keeps_the_stock_module_parameters_and_keys(host):
    from tencentpretrain.targets.lm_target import LmTarget
    from tencentpretrain.targets.target import Target
    from chatflow_plugin.errors import ChatflowError
    from chatflow_plugin.hosts.tencentpretrain.classes import ChatflowInstructionTarget

    container = Target()
    container.update(LmTarget(_target_args(), 30), "lm")
    before = {k: v.clone() for k, v in container.state_dict().items()}
    weight = container.lm.output_layer.weight
    ChatflowInstructionTarget.adopt(container.lm, _target_args())
    assert isinstance(container.lm, ChatflowInstructionTarget) and container.lm.output_layer.weight is weight
    assert list(container.state_dict()) == ["lm.output_layer.weight"] == list(before)
    out = container(torch.randn(2, 3, 16), torch.randint(0, 30, (2, 3)), torch.ones(2, 3, dtype=torch.long))
    assert isinstance(out, tuple) and len(out) == 3
    with pytest.raises(ChatflowError, match="label smoothing"):
        ChatflowInstructionTarget(_target_args(label_smoothing=0.1), 30)


def test_host_preprocess_output_equals_the_core_preprocessing(dataset, corpus, spm_model, tmp_path):
    from chatflow_plugin.data.mixture import load_mixture
    from chatflow_plugin.data.preprocess import preprocess

    preprocess(load_mixture(corpus / "mixture.json"), spm_model, tmp_path / "core", workers=1)
    for name in ("en", "zh", "par", "inst"):
        assert (dataset / f"{name}.tokens.bin").read_bytes() == (tmp_path / "core" / f"{name}.tokens.bin").read_bytes()
    assert (dataset / "inst.mask.bin").read_bytes() == (tmp_path / "core" / "inst.mask.bin").read_bytes()


def test_preprocess_errors_are_one_line(corpus, home):
    proc = subprocess.run([sys.executable, str(ROOT / "preprocess.py"), "--spm_model_path", "../spm.model",
                           "--dataset_path", "../nothing", "--data_processor", "dynamic_mixture"],
                          cwd=corpus / "cwd", env=_env(home), capture_output=True, text=True)
    assert proc.returncode == 2 and "needs --mixture_config" in proc.stderr and "Traceback" not in proc.stderr


# -- subprocess: training ---------------------------------------------------------------------

def _pretrain_args(dataset: Path, corpus: Path, out: str, steps: int, batch: int, extra=()):
    return [str(ROOT / "pretrain.py"), "--dataset_path", str(dataset), "--spm_model_path", str(corpus / "spm.model"),
            "--config_path", str(TINY), "--output_model_path", out, "--data_processor", "dynamic_mixture",
            "--target", "chatflow_instruction", "--total_steps", str(steps), "--batch_size", str(batch),
            "--learning_rate", "3e-3", "--warmup_steps", "0", "--seed", "7", *extra]      # a short run's own warm-up


def test_pretrain_cpu_learns_logs_groups_and_saves_a_loadable_final_checkpoint(dataset, corpus, home):
    out = corpus / "cpu_run"
    # LLaMA-2's AdamW (bias correction, beta2 0.95) takes lr-sized steps: a tiny model learns in 32 steps at 1e-2
    proc = _run([sys.executable, *_pretrain_args(dataset, corpus, str(out / "model"), 32, 8,
                                                 ["--report_steps", "8", "--save_checkpoint_steps", "1000",
                                                  "--learning_rate", "1e-2",
                                                  "--tensorboard_dir", str(out / "tb")])],
                cwd=corpus / "cwd", env=_env(home))
    reports = _reports(proc.stderr + proc.stdout)
    assert [r["step"] for r in reports] == [8, 16, 24, 32]
    assert reports[-1]["loss"] < reports[0]["loss"] - 1.0, reports
    for r in reports:
        assert set(r["groups"]) >= {"en_corpus", "zh_corpus", "parallel", "instructions"}
        assert "p: en_corpus" in r["tail"]
    # --tensorboard_dir: the same numbers as the log lines (which round them), per group too
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(next((out / "tb").glob("events.out.tfevents.*"))), size_guidance={"scalars": 0})
    events.Reload()
    scalar = {(tag, e.step): e.value for tag in events.Tags()["scalars"] for e in events.Scalars(tag)}
    for r in reports:
        assert abs(scalar[("train/loss", r["step"])] - r["loss"]) <= 0.006
        assert scalar[("train/samples", r["step"])] == r["step"] * 8
        for group, value in r["groups"].items():
            if value != "-":
                assert abs(scalar[(f"train/loss_{group}", r["step"])] - float(value)) <= 0.0006
        assert abs(sum(scalar[(f"train/p_{g}", r["step"])] for g in r["groups"]) - 1) < 1e-5
        assert abs(sum(scalar[(f"train/mix_{g}", r["step"])] for g in r["groups"]) - 1) < 1e-5
    assert scalar[("train/learning_rate", 8)] > scalar[("train/learning_rate", 32)] >= 0   # the host's decay
    # the last step is saved although 32 is not a multiple of --save_checkpoint_steps
    final = out / "model-32"
    assert final.is_file() and json.loads((out / "model-32.chatflow.json").read_text())["samples_done"] == 256
    state = torch.load(final, map_location="cpu")
    assert "target.lm.output_layer.weight" in state
    check = (f"import sys, torch, argparse, json\n"
             f"from chatflow_plugin import register; register()\n"
             f"from tencentpretrain.model_builder import build_model\n"
             f"from tencentpretrain.utils import str2tokenizer\n"
             f"from tencentpretrain.opts import model_opts, tokenizer_opts, deepspeed_opts, mp_opts, lora_opts\n"
             f"p = argparse.ArgumentParser()\n"
             f"for add in (model_opts, tokenizer_opts, deepspeed_opts, mp_opts, lora_opts): add(p)\n"
             f"a = p.parse_args(['--spm_model_path', {str(corpus / 'spm.model')!r}])\n"
             f"vars(a).update(json.load(open({str(TINY)!r})))\n"
             f"a.tokenizer = str2tokenizer['bert'](a); a.data_processor = 'lm'; a.decoder = None\n"
             f"a.lora_params = None; a.dropout = 0.0\n"
             f"m = build_model(a)\n"
             f"m.load_state_dict(torch.load({str(final)!r}, map_location='cpu'), strict=True)\n"
             f"print('LOADED', sum(p.numel() for p in m.parameters()))\n")
    loaded = _run([sys.executable, "-c", check], cwd=ROOT, env=dict(_env(home), PYTHONPATH=str(ROOT)))
    assert "LOADED" in loaded.stdout


def test_pretrain_refuses_a_config_for_another_vocabulary(dataset, corpus, home, tmp_path):
    config = json.loads(TINY.read_text())
    config["vocab_size"] = 40763
    (tmp_path / "c.json").write_text(json.dumps(config))
    args = _pretrain_args(dataset, corpus, str(tmp_path / "o" / "m"), 2, 2)
    args[args.index(str(TINY))] = str(tmp_path / "c.json")
    proc = subprocess.run([sys.executable, *args], cwd=corpus / "cwd", env=_env(home), capture_output=True, text=True)
    assert proc.returncode == 2 and "40763-piece vocabulary" in proc.stderr and "Traceback" not in proc.stderr


def _torchrun(nproc: int, args: list[str], cwd: Path, env: dict) -> subprocess.CompletedProcess:
    return _run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc),
                 "--master_port", str(_free_port()), *args], cwd=cwd, env=env, timeout=900)


def test_deepspeed_resume_and_two_ranks_follow_the_single_process_sequence(dataset, corpus, home):
    pytest.importorskip("deepspeed")
    from chatflow_plugin.hosts.tencentpretrain.batches import read_sample_log

    env = _env(home)
    run = corpus / "ds_runs"
    ds = ["--deepspeed", "--deepspeed_config", str(CPU_DS), "--report_steps", "4", "--save_checkpoint_steps", "6"]
    full = _torchrun(1, _pretrain_args(dataset, corpus, str(run / "full"), 12, 4,
                                       ds + ["--sample_log", str(run / "full.jsonl")]), corpus / "cwd", env)
    assert (run / "full" / "12" / "chatflow_state.json").is_file()       # final step saved
    # interrupt after step 6: a checkpoint directory whose latest is 6; the host restarts at step 1
    (run / "resumed").mkdir()
    shutil.copytree(run / "full" / "6", run / "resumed" / "6")
    (run / "resumed" / "latest").write_text("6")
    resumed = _torchrun(1, _pretrain_args(dataset, corpus, str(run / "resumed"), 12, 4,
                                          ds + ["--resume_from_checkpoint", str(run / "resumed"),
                                                "--sample_log", str(run / "resumed.jsonl")]), corpus / "cwd", env)
    assert "starting at step 7 = global sample 24" in resumed.stderr + resumed.stdout
    whole, rest = read_sample_log(run / "full.jsonl"), read_sample_log(run / "resumed.jsonl")
    assert sorted(rest) == list(range(7, 13))
    assert all(rest[s] == whole[s] for s in rest)
    assert _reports(resumed.stderr)[-1]["loss"] == pytest.approx(_reports(full.stderr)[-1]["loss"], abs=0.011)
    # two data-parallel processes with half the micro-batch: disjoint, together the same sequence
    _torchrun(2, _pretrain_args(dataset, corpus, str(run / "two"), 12, 2,
                                ds + ["--sample_log", str(run / "two.jsonl")]), corpus / "cwd", env)
    ranks = [read_sample_log(f"{run / 'two.jsonl'}.rank{r}") for r in range(2)]
    for step in range(1, 13):
        a, b = ranks[0][step], ranks[1][step]
        assert not set(a) & set(b)
        assert sorted(a + b) == whole[step]
    assert len({i for r in ranks for s in r.values() for i in s}) == 48


# -- issue 15: elastic resume, a mixture change, adaptive mixing that resumes exactly -------------------------

def _strip_times(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in e.items() if k != "time"} for e in history]


def _resume_copy(src: Path, tag: int, dst: Path) -> Path:
    """A DeepSpeed output folder holding only checkpoint ``tag`` (as if the run had been killed after it)."""
    dst.mkdir(parents=True)
    shutil.copytree(src / str(tag), dst / str(tag))
    (dst / "latest").write_text(str(tag))
    return dst


def test_deepspeed_run_on_two_ranks_resumes_on_one_and_changes_its_mixture(dataset, corpus, home, tmp_path):
    pytest.importorskip("deepspeed")
    from chatflow_plugin.data.batches import MixtureDataset
    from chatflow_plugin.data.runstate import history_of, read_state
    from chatflow_plugin.data.shards import ShardSet
    from chatflow_plugin.hosts.tencentpretrain.batches import read_sample_log

    env = _env(home)
    run = corpus / "elastic_runs"
    ds = ["--deepspeed", "--deepspeed_config", str(CPU_DS), "--report_steps", "4", "--save_checkpoint_steps", "4"]
    _torchrun(2, _pretrain_args(dataset, corpus, str(run / "two"), 8, 2, ds + ["--sample_log", str(run / "two.jsonl")]),
              corpus / "cwd", env)
    ranks = [read_sample_log(f"{run / 'two.jsonl'}.rank{r}") for r in range(2)]
    two = {step: sorted(ranks[0][step] + ranks[1][step]) for step in range(1, 9)}
    # one process, twice the micro-batch (the same global batch): DeepSpeed cannot repartition ZeRO's optimizer
    # state, so the plugin refuses before building the model and spells out DeepSpeed's universal conversion
    one = _resume_copy(run / "two", 4, run / "one")
    args = _pretrain_args(dataset, corpus, str(one), 8, 4, ds + ["--resume_from_checkpoint", str(one),
                                                                 "--sample_log", str(run / "one.jsonl")])
    refused = subprocess.run([sys.executable, *args], cwd=corpus / "cwd", env=env, capture_output=True, text=True)
    assert refused.returncode == 2 and "saved by 2 data-parallel ranks and this run has 1" in refused.stderr
    _run([sys.executable, "-m", "deepspeed.checkpoint.ds_to_universal", "--input_folder", str(one / "4"),
          "--output_folder", str(one / "4_universal"), "--inject_missing_state"], cwd=corpus / "cwd", env=env)
    universal = tmp_path / "universal.json"
    universal.write_text(json.dumps(dict(json.loads(CPU_DS.read_text()), checkpoint={"load_universal": True})))
    args[args.index(str(CPU_DS))] = str(universal)
    proc = _torchrun(1, args, corpus / "cwd", env)
    assert "starting at step 5 = global sample 16" in proc.stderr + proc.stdout
    rest = read_sample_log(run / "one.jsonl")
    assert {s: sorted(v) for s, v in rest.items()} == {s: two[s] for s in range(5, 9)}
    state = read_state(one / "8" / "chatflow_state.json")
    assert (state["world_size"], state["micro_batch_size"], state["samples_done"]) == (1, 4, 32)
    assert [(e["what"], e["old"], e["new"]) for e in state["history"]] == [("micro_batch_size", 2, 4), ("world_size", 2, 1)]
    # another mixture from step 4 on (allowed): samples 0..15 as they were, then the new mix
    mixture = json.loads((corpus / "mixture.json").read_text())
    for group in mixture["groups"]:
        group["alpha"] = group["beta"] = 5.0 if group["name"] == "instructions" else 0.1
    (corpus / "more_instructions.json").write_text(json.dumps(mixture))
    changed = _resume_copy(one, 4, run / "changed")
    shutil.copytree(one / "4_universal", changed / "4_universal")
    (changed / "latest_universal").write_text("4_universal")
    args = _pretrain_args(dataset, corpus, str(changed), 8, 4, ds + [
        "--resume_from_checkpoint", str(changed), "--mixture_config", str(corpus / "more_instructions.json"),
        "--allow_change", "mixture", "--sample_log", str(run / "changed.jsonl")])
    args[args.index(str(CPU_DS))] = str(universal)
    _torchrun(1, args, corpus / "cwd", env)
    state = read_state(changed / "8" / "chatflow_state.json")
    entry = state["history"][-1]
    assert (entry["what"], entry["step"], entry["sample"]) == ("mixture", 4, 16)
    shards = ShardSet(dataset)
    revised = MixtureDataset(shards, spec=history_of(state, "state")).batch(list(range(32)))
    original = MixtureDataset(shards).batch(list(range(32)))
    assert (revised["tokens"][:16] == original["tokens"][:16]).all()
    inst = revised["group"][16:] == MixtureDataset(shards).group_names.index("instructions")
    assert inst.mean() > 0.8
    logged = {json.loads(line)["step"]: json.loads(line)["groups"] for line in (run / "changed.jsonl").read_text().splitlines()}
    assert [g for s in range(5, 9) for g in logged[s]] == revised["group"][16:].tolist()


def test_deepspeed_adaptive_run_killed_and_resumed_is_identical(dataset, corpus, home, spm_model):
    pytest.importorskip("deepspeed")
    from chatflow_plugin.data.mixture import load_mixture
    from chatflow_plugin.data.preprocess import preprocess
    from chatflow_plugin.data.runstate import read_state
    from chatflow_plugin.hosts.tencentpretrain.batches import read_sample_log

    rng = random.Random(5)
    held = corpus / "held_data"
    held.mkdir()
    for name, field in (("en", "text"), ("zh", "text"), ("par", "en"), ("inst", "instruction")):
        lines = (corpus / "data" / f"{name}.jsonl").read_text(encoding="utf-8").splitlines()
        records = [json.loads(line) for line in rng.sample([x for x in lines if x.strip()], 20)]
        for record in records:           # documents of the same kind that were never trained on (the trainer checks)
            record[field] = "held out: " + record[field]
        _jsonl(held / f"{name}.jsonl", records)
    spec = load_mixture(corpus / "mixture.json").with_overrides(data_root=held)
    preprocess(spec, corpus / "spm.model", corpus / "held_ds", workers=1)
    mixture = json.loads((corpus / "mixture.json").read_text())
    mixture["adaptive"] = {"signal": "loss", "every_samples": 8, "rate": 2.0, "smoothing": 0.3}
    (corpus / "adaptive.json").write_text(json.dumps(mixture))
    env = _env(home)
    run = corpus / "adaptive_runs"
    extra = ["--deepspeed", "--deepspeed_config", str(CPU_DS), "--report_steps", "4", "--save_checkpoint_steps", "4",
             "--mixture_config", str(corpus / "adaptive.json"), "--heldout_dataset_path", str(corpus / "held_ds"),
             "--heldout_windows", "4"]
    straight = _torchrun(1, _pretrain_args(dataset, corpus, str(run / "straight"), 8, 4,
                                           extra + ["--sample_log", str(run / "straight.jsonl")]), corpus / "cwd", env)
    assert "heldout: en_corpus" in straight.stderr + straight.stdout
    resumed = _resume_copy(run / "straight", 4, run / "resumed")
    _torchrun(1, _pretrain_args(dataset, corpus, str(resumed), 8, 4, extra + [
        "--resume_from_checkpoint", str(resumed), "--sample_log", str(run / "resumed.jsonl")]), corpus / "cwd", env)
    a = read_state(run / "straight" / "8" / "chatflow_state.json")
    b = read_state(resumed / "8" / "chatflow_state.json")
    assert [e["step"] for e in a["history"]] == [2, 4, 6, 8] and all(e["by"] == "adaptive" for e in a["history"])
    assert _strip_times(a["history"]) == _strip_times(b["history"]) and a["adaptive"] == b["adaptive"]
    whole = read_sample_log(run / "straight.jsonl")
    tail = read_sample_log(run / "resumed.jsonl")
    assert all(tail[s] == whole[s] for s in range(5, 9))
    groups = lambda path: {json.loads(line)["step"]: json.loads(line)["groups"]  # noqa: E731
                           for line in path.read_text().splitlines()}
    assert all(groups(run / "resumed.jsonl")[s] == groups(run / "straight.jsonl")[s] for s in range(5, 9))
