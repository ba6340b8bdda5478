"""``scripts/chatflow_full_run.sh`` at full scale, in every form a CPU can run: ``--dry_run`` with the shipped
defaults (always), ``--smoke`` with the HuggingFace backend (always) and with TencentPretrain (when a host work
tree is set), and every command of the runbook ``docs/full_scale.md``: its smoke commands are the ones run here,
its cluster commands run in their ``--dry_run`` form, its ``chatflow`` commands run on the smoke run's output."""
from __future__ import annotations

import json
import math
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "chatflow_full_run.sh"
RUNBOOK = ROOT / "docs" / "full_scale.md"


def _env(**extra) -> dict:
    env = dict(os.environ, PYTHON=sys.executable, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
               OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    env.pop("WORLD_SIZE", None)
    env.update(extra)
    return env


def _run(args, cwd: Path, env: dict | None = None, timeout: int = 1800) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT), *args], cwd=cwd, env=env or _env(), text=True, capture_output=True,
                          timeout=timeout)


def runbook_commands() -> list[str]:
    """The commands of the runbook's ```bash blocks (continuation lines joined, `export` lines left out)."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", RUNBOOK.read_text(encoding="utf-8"), flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.strip()
            if line and not line.startswith("#") and not line.startswith("export "):
                commands.append(line)
    return commands


def smoke_command(backend: str) -> list[str]:
    """The runbook's smoke command for a backend, as arguments of the script."""
    for command in runbook_commands():
        words = shlex.split(command)
        if words[0] == "scripts/chatflow_full_run.sh" and "--smoke" in words and \
                (("--backend" in words and words[words.index("--backend") + 1] == backend) or
                 ("--backend" not in words and backend == "host")):
            return words[1:]
    raise AssertionError(f"docs/full_scale.md has no --smoke command for the {backend} backend")


# -- --dry_run -------------------------------------------------------------------------------------------------

def test_dry_run_with_the_shipped_defaults_plans_the_papers_run(tmp_path):
    env = _env()
    env.pop("TENCENTPRETRAIN_HOME", None)
    done = _run(["--dry_run", "--output_dir", "out"], cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    plan = json.loads((tmp_path / "out" / "plan.json").read_text())
    # the acceptance: T_grow read literally, the paper's batch, precision and vocabulary, Meta's optimizer
    assert plan["schedule_unit"] == "samples" and plan["t_grow_reached_at_step"] == 9766 == math.ceil(5e6 / 512)
    assert plan["global_batch_size"] == 512 and plan["precision"] == "bf16" and plan["vocab_size"] == 40763
    assert (plan["learning_rate"], plan["warmup_steps"], plan["adam_epsilon"]) == (3e-4, 2000, 1e-5)
    assert (plan["lr_scheduler"], plan["min_lr_ratio"], plan["adam_beta1"], plan["adam_beta2"], plan["weight_decay"],
            plan["max_grad_norm"], plan["hyperparameters"]) == ("cosine_with_min_lr", 0.1, 0.9, 0.95, 0.1, 1.0, "llama2")
    # the length: the paper's compute (16 A100s for two weeks) at the stated throughput
    assert plan["steps"] > 9766 and plan["length"]["from"] == "gpu_hours" and plan["length"]["gpu_hours"] == 5376
    assert plan["length"]["tokens_per_second_per_gpu"] == pytest.approx(3014.08, abs=0.01)
    assert "Touvron" in plan["length"]["throughput_from"]
    assert plan["steps"] == math.floor(5376 * 3600 * plan["length"]["tokens_per_second_per_gpu"] / (512 * 2048))
    # per-group epochs over the paper's 8B tokens of data (split by Table 1's GB): read several times
    assert all(g["epochs"] > 1 for g in plan["groups"].values()) and plan["data"]["epochs"] > 7
    assert any("is read" in w and "epochs > 4" in w for w in plan["warnings"])
    assert plan["seq_length"] == 2048 and plan["tokens"] > 5.8e10
    assert (plan["micro_batch_size"], plan["gpus"], plan["gradient_accumulation_steps"]) == (4, 8, 16)
    for missing in ("--llama2", "--data_root", "--benchmarks"):
        assert f"  - {missing}:" in done.stderr
    assert "input(s) still missing" in done.stderr
    # every stage's command is printed, none is run
    out = done.stdout
    assert "--expect_vocab_size 40763" in out and "models/vocab/chatflow_62_symbols.txt" in out
    assert "pretrain.py --deepspeed --deepspeed_config out/deepspeed_config.json" in out and "--enable_zero3" in out
    for flag in (f"--total_steps {plan['steps'] * 16}", "--scheduler cosine_with_min_lr", "--warmup_steps 2000",
                 "--weight_decay 0.1", "--adam_beta2 0.95", "--adam_epsilon 1e-05", "--adam_bias_correction",
                 "--learning_rate 0.0003", "--batch_size 4"):
        assert flag in out, flag
    assert "zero_to_fp32.py" in out and "convert tp2hf" in out and "chatflow eval" in out
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["plan.json"]


def test_dry_run_batch_arithmetic_for_two_nodes_and_the_hf_backend(tmp_path):
    done = _run(["--dry_run", "--output_dir", "out", "--nodes", "2", "--backend", "hf"], cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    plan = json.loads((tmp_path / "out" / "plan.json").read_text())
    assert (plan["gpus"], plan["gradient_accumulation_steps"], plan["backend"]) == (16, 8, "hf")
    assert plan["gpu_hours"]["hours"] == pytest.approx(plan["gpu_hours"]["gpu_hours"] / 16)
    for flag in ("--nnodes 2", f"--train_steps {plan['steps']}", "--gradient_accumulation_steps 8",
                 "--micro_batch_size 4", "--warmup_steps 2000", "--lr_scheduler cosine_with_min_lr",
                 "--adam_epsilon 1e-05", "--max_grad_norm 1", "--learning_rate 0.0003", "--bf16",
                 "models/hf/deepspeed_zero3_hf.json", "chatflow preprocess"):
        assert flag in done.stdout, flag


def test_dry_run_lengths_hyperparameter_sets_old_spellings_and_the_records_reading(tmp_path):
    done = _run(["--dry_run", "--output_dir", "a", "--steps", "20000", "--warmup", "0.01", "--hyperparameters",
                 "cautious"], cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "note: --steps is deprecated, use --train_steps" in done.stderr
    assert "note: --warmup is deprecated, use --warmup_steps" in done.stderr
    plan = json.loads((tmp_path / "a" / "plan.json").read_text())
    assert (plan["steps"], plan["length"]["from"], plan["warmup_steps"]) == (20000, "steps", 200)  # 1% of the run
    assert (plan["hyperparameters"], plan["learning_rate"], plan["adam_epsilon"]) == ("cautious", 1e-4, 1e-5)
    assert "--learning_rate 0.0001" in done.stdout and "--warmup_steps 0.01" in done.stdout
    done = _run(["--dry_run", "--output_dir", "b", "--tokens", "2e10", "--learning_rate", "2e-4", "--schedule_unit",
                 "records"], cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    plan = json.loads((tmp_path / "b" / "plan.json").read_text())
    assert plan["steps"] == math.ceil(2e10 / (512 * 2048)) and plan["learning_rate"] == 2e-4
    assert plan["schedule_unit"] == "records" and plan["reading"]["records_per_sample"] == 10.85
    assert plan["t_grow_reached_at_step"] == math.ceil(5e6 / 10.85 / 512)
    # a warm-up that outlasts the run is said; another mixture than Table 1 gets no data size unless given one
    done = _run(["--dry_run", "--output_dir", "c", "--train_steps", "12000", "--warmup_steps", "12000", "--mixture",
                 str(ROOT / "models" / "mixtures" / "tiny_corpora.json")], cwd=tmp_path)
    assert done.returncode == 0 and "warning: the warm-up (12000 steps) is not shorter than the run (12000 steps)" \
        in done.stderr
    assert "data" not in json.loads((tmp_path / "c" / "plan.json").read_text())


@pytest.mark.parametrize("args, message", [
    (["--zero_stage", "4"], "--zero_stage must be 2 or 3"),
    (["--global_batch_size", "500"], "is not a multiple of --micro_batch_size x GPUs = 4 x 8"),
    (["--nodes", "2", "--node_rank", "2"], "--node_rank 2 is outside 0..1"),
    (["--stages", "expand,fly"], "unknown stage fly"),
    (["--tokens", "8e9"], "--allow_partial_schedule"),
    (["--smoke"], "give one"),
    (["--nodes", "two"], "--nodes must be a whole number, got two"),
    (["--steps", "10", "--train_steps", "10"], "--steps is the old spelling of --train_steps"),
    (["--train_steps", "10", "--tokens", "1e9"], "give the run's length once"),
    (["--hyperparameters", "fast"], "unknown set fast"),
    (["--warmup_steps", "-1"], "--warmup_steps must be 0 or more"),
])
def test_dry_run_refuses_what_cannot_run(tmp_path, args, message):
    done = _run(["--dry_run", "--output_dir", "out", *args], cwd=tmp_path)
    assert done.returncode == 2 and message in done.stderr, done.stderr[-2000:]
    assert "Traceback" not in done.stderr


def test_dry_run_checks_the_inputs_it_is_given(tmp_path):
    config = json.loads((ROOT / "models/llama2/7b_config.json").read_text())
    config["vocab_size"] = 40000
    (tmp_path / "7b.json").write_text(json.dumps(config))
    (tmp_path / "llama").mkdir()
    (tmp_path / "bench" / "mmlu").mkdir(parents=True)
    done = _run(["--dry_run", "--output_dir", "out", "--config", "7b.json", "--llama2", "llama", "--data_root", "data",
                 "--benchmarks", "bench"], cwd=tmp_path)
    assert done.returncode == 2 and "vocab_size 40000, but the expanded tokenizer will have 40763" in done.stderr
    done = _run(["--dry_run", "--output_dir", "out", "--llama2", "llama", "--data_root", "data", "--benchmarks",
                 "bench"], cwd=tmp_path)
    assert done.returncode == 0
    assert "--llama2 llama: no config.json and tokenizer.model there" in done.stderr
    assert "no file matches" in done.stderr and "data/en_corpus/refinedweb/*.jsonl" in done.stderr
    assert "--benchmarks bench: no ceval/ folder" in done.stderr and "no mmlu/ folder" not in done.stderr
    # a stage run alone needs the earlier stages' outputs
    done = _run(["--dry_run", "--output_dir", "out", "--stages", "train"], cwd=tmp_path)
    assert "made by the preprocess stage, which this invocation does not run" in done.stderr


# -- --smoke ---------------------------------------------------------------------------------------------------

def _smoke(backend: str, cwd: Path, env: dict) -> tuple[Path, subprocess.CompletedProcess]:
    args = smoke_command(backend)
    done = _run(args, cwd=cwd, env=env)
    assert done.returncode == 0, f"STDOUT:\n{done.stdout[-3000:]}\nSTDERR:\n{done.stderr[-6000:]}"
    return cwd / args[args.index("--output_dir") + 1], done


def _check_smoke(out: Path, done: subprocess.CompletedProcess) -> dict:
    plan = json.loads((out / "plan.json").read_text())
    assert plan["precision"] == "bf16" and plan["dataset"] is not None
    assert plan["schedule_unit"] == "samples" and plan["t_grow_reached_at_step"] == 5 < plan["steps"] == 8
    assert (plan["gpus"], plan["gradient_accumulation_steps"], plan["warmup_steps"]) == (2, 2, 2)
    # the train stage ran as 2 nodes x 1 process, two launchers on 127.0.0.1
    assert "2 nodes x 1 process(es) on 127.0.0.1, one torchrun launcher per node" in done.stderr
    assert (out / "train.node0.log").is_file() and (out / "train.node1.log").is_file()
    report = json.loads((out / "expand_report.json").read_text())
    assert report["size"] == plan["vocab_size"] == report["base_size"] + 100 + 62
    assert json.loads((out / "chatflow_hf" / "config.json").read_text())["vocab_size"] == plan["vocab_size"]
    assert f"release ok: {out.name}/chatflow_hf" in done.stdout or "release ok:" in done.stdout
    table = json.loads((out / "eval" / "table2.json").read_text())
    assert {"llama2", "chatflow"} <= set(json.dumps(table).split('"')) and (out / "eval" / "table2.md").is_file()
    return plan


INPUTS = ("base", "dataset", "llama2_expanded_hf", "llama2_expanded_tp", "tokenizer.model", "mixture.json",
          "expand_report.json")


def _train_on_one_node(args: list[str], out: Path, cwd: Path, env: dict) -> tuple[Path, subprocess.CompletedProcess]:
    """The smoke's train stage again from the same inputs, as 1 node x 2 processes."""
    one = cwd / f"{out.name}_one_node"
    one.mkdir()
    for name in INPUTS:
        if (out / name).is_dir():
            shutil.copytree(out / name, one / name)
        elif (out / name).is_file():
            shutil.copyfile(out / name, one / name)
    args = list(args)
    args[args.index("--output_dir") + 1] = one.name
    done = _run(args + ["--stages", "train", "--nodes", "1", "--gpus_per_node", "2"], cwd=cwd, env=env)
    assert done.returncode == 0, f"STDOUT:\n{done.stdout[-3000:]}\nSTDERR:\n{done.stderr[-6000:]}"
    assert "1 nodes x 2 process(es) on 127.0.0.1" in done.stderr
    return one, done


@pytest.fixture(scope="module")
def hf_smoke(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("smoke_hf")
    return (cwd, *_smoke("hf", cwd, _env()))


@pytest.mark.slow
def test_smoke_hf_runs_every_stage_and_trains_what_the_plan_says(hf_smoke):
    _, out, done = hf_smoke
    plan = _check_smoke(out, done)
    summary = json.loads((out / "chatflow_run" / "train_summary.json").read_text())
    assert summary["steps"] == 8 and summary["samples"] == plan["samples"] == 64 and summary["world_size"] == 2
    assert summary["group_samples"] == {g: v["samples"] for g, v in plan["groups"].items()}
    assert "would run" not in done.stdout


@pytest.mark.slow
def test_smoke_hf_two_nodes_train_exactly_as_one_node_of_two_processes(hf_smoke):
    cwd, out, _ = hf_smoke
    one, _ = _train_on_one_node(smoke_command("hf"), out, cwd, _env())

    def records(run: Path) -> list[dict]:
        rows = [json.loads(line) for line in (run / "chatflow_run" / "log.jsonl").read_text().splitlines()]
        return [{k: v for k, v in r.items() if k != "seconds_this_session"} for r in rows]
    two_nodes = records(out)
    assert [r["kind"] for r in two_nodes].count("train") == 4          # every 2 steps: samples, loss, per group
    assert records(one) == two_nodes
    weights = sorted(p.name for p in (out / "chatflow_run" / "final").glob("*.safetensors"))
    assert weights and all((out / "chatflow_run" / "final" / w).read_bytes() ==
                           (one / "chatflow_run" / "final" / w).read_bytes() for w in weights)


def test_smoke_says_which_backend_it_uses_without_a_host(tmp_path):
    env = _env()
    env.pop("TENCENTPRETRAIN_HOME", None)
    done = _run(["--smoke", "--output_dir", "s", "--zero_stage", "4"], cwd=tmp_path, env=env)     # stops right after
    assert done.returncode == 2 and "--zero_stage must be 2 or 3" in done.stderr
    assert "smoke: backend hf (chatflow train), because TENCENTPRETRAIN_HOME is not set" in done.stderr


@pytest.mark.slow
@pytest.mark.host
def test_smoke_host_runs_every_stage_with_tencentpretrain_and_deepspeed(tmp_path, tencentpretrain_home):
    pytest.importorskip("deepspeed")
    env = _env(TENCENTPRETRAIN_HOME=str(tencentpretrain_home))
    out, done = _smoke("host", tmp_path, env)
    assert "smoke: backend hf" not in done.stderr              # the host by default when one is set
    plan = _check_smoke(out, done)
    log = (out / "train.node0.log").read_text()
    assert "betas (0.9, 0.95), eps 1e-05, weight decay 0.1, learning-rate schedule cosine_with_min_lr over 8 optimizer " \
           "steps (16 micro-batches / 2 accumulated), peak 0.0003 after 2 warm-up steps, gradient clipping 1" in log
    last = re.findall(r"\|\s+16/\s+16 steps\|.*\| p: (.*)", log)[-1]
    shown = dict(re.findall(r"(\w+) ([\d.]+)", last))
    assert {g: float(v) for g, v in shown.items()} == pytest.approx(plan["p_end"], abs=5e-4)
    state = json.loads((out / "chatflow_tp" / "16" / "chatflow_state.json").read_text())
    assert state["samples_done"] == plan["samples"] == 64
    ds = json.loads((out / "deepspeed_config.json").read_text())
    assert ds["bf16"] == {"enabled": True} and ds["zero_optimization"]["stage"] == 3
    assert (ds["train_micro_batch_size_per_gpu"], ds["gradient_accumulation_steps"], ds["train_batch_size"]) == (2, 2, 8)
    # the same run as 1 node x 2 processes: the same samples on each rank, the same losses, the same weights
    one, _ = _train_on_one_node(smoke_command("host"), out, tmp_path, env)
    for rank in (0, 1):
        assert (one / f"samples.jsonl.rank{rank}").read_text() == (out / f"samples.jsonl.rank{rank}").read_text()
    losses = [re.findall(r"\| loss .*", (run / "train.node0.log").read_text()) for run in (out, one)]
    assert len(losses[0]) == 4 and losses[0] == losses[1]
    states = sorted(p.name for p in (out / "chatflow_tp" / "16").glob("*optim_states.pt"))
    assert len(states) == 2 and all((out / "chatflow_tp" / "16" / f).read_bytes() ==
                                    (one / "chatflow_tp" / "16" / f).read_bytes() for f in states)
    again = _run(smoke_command("host"), cwd=tmp_path, env=env)
    assert again.returncode == 0 and "train: done" in again.stderr and "release: done" in again.stderr


# -- the runbook -----------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_every_runbook_command_runs_in_its_smoke_or_dry_run_form(hf_smoke, tmp_path):
    smoke_cwd, smoke_out, _ = hf_smoke
    commands = runbook_commands()
    assert len(commands) >= 12
    kinds = {"smoke": 0, "dry_run": 0, "chatflow": 0}
    for i, command in enumerate(commands):
        words = shlex.split(command)
        if words[0] == "scripts/chatflow_full_run.sh" and "--smoke" in words:
            backend = words[words.index("--backend") + 1] if "--backend" in words else "host"
            assert words[1:] == smoke_command(backend)        # run by the smoke tests above
            kinds["smoke"] += 1
        elif words[0] == "scripts/chatflow_full_run.sh":
            run = tmp_path / f"run{i}"
            env = _env(LLAMA2=str(tmp_path / "llama-2-7b-hf"), DATA=str(tmp_path / "table1"),
                       BENCH=str(tmp_path / "benchmarks"), RUN=str(run))
            dry = command if "--dry_run" in words else command + " --dry_run"
            done = subprocess.run(["bash", "-c", dry], cwd=ROOT, env=env, text=True, capture_output=True, timeout=600)
            assert done.returncode == 0, f"{dry}\n{done.stderr[-3000:]}"
            assert "would run:" in done.stdout and json.loads((run / "plan.json").read_text())["vocab_size"] == 40763
            kinds["dry_run"] += 1
        elif words[0] == "chatflow":
            env = _env(RUN=str(smoke_out), LLAMA2="", DATA="", BENCH="")
            done = subprocess.run(["bash", "-c", command], cwd=ROOT, env=env, text=True, capture_output=True, timeout=600)
            assert done.returncode == 0, f"{command}\n{done.stderr[-3000:]}"
            kinds["chatflow"] += 1
        else:
            raise AssertionError(f"runbook command without a smoke or dry-run form: {command}")
    assert kinds["smoke"] == 2 and kinds["dry_run"] >= 8 and kinds["chatflow"] >= 2
    assert not (ROOT / "runs" / "smoke").exists() and not (ROOT / "runs" / "smoke_hf").exists()


@pytest.mark.parametrize("doc", [RUNBOOK, ROOT / "README.md"], ids=["runbook", "readme"])
def test_the_papers_plan_shown_in_the_docs_is_what_chatflow_plan_prints(doc):
    text = doc.read_text(encoding="utf-8")
    command = next(c for c in runbook_commands() if c.startswith("chatflow plan --mixture"))
    shown = re.search(r"```bash\n" + re.escape(command) + r"\n```\n\n```\n(.*?)```", text, flags=re.S).group(1)
    done = subprocess.run(["bash", "-c", command], cwd=ROOT, env=_env(), text=True, capture_output=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == shown.strip()
