"""clo-train: attention-only changes only attention weights, exact resume, per-term log, SFT baseline."""
from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from chatflow_plugin.cli import main as chatflow_main
from chatflow_plugin.clo.train import CLOTrainOptions, run_training, sft_sequences
from chatflow_plugin.errors import ChatflowError
from test_clo_support import tiny_llama_dir, triples_dir


@pytest.fixture(scope="module")
def env(tmp_path_factory, spm_model):
    root = tmp_path_factory.mktemp("clo_train")
    return tiny_llama_dir(root / "model", spm_model), triples_dir(root / "data", n=8), root


def _options(env, out, **overrides):
    model, data, root = env
    kwargs = dict(model_path=str(model), data_dir=str(data), output_dir=str(root / out), train_steps=4, log_every=1,
                  save_every=2, micro_batch_size=2, learning_rate=1e-3, warmup_steps=0.0,
                  lr_scheduler="linear", max_length=48, use_cpu=True, quiet=True)
    kwargs.update(overrides)
    return CLOTrainOptions(**kwargs)


def _weights(directory):
    return load_file(str(directory / "model.safetensors"))


def _tree(folder):
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


TOKENIZER_FILES = ("tokenizer.model", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


class StopAt:
    """Interrupts training after the given optimizer step (like a preempted job)."""

    def __init__(self, step):
        from transformers import TrainerCallback

        class _Stop(TrainerCallback):
            def on_step_end(inner, args, state, control, **kwargs):
                if state.global_step >= step:
                    control.should_training_stop = True
                return control

        self.callback = _Stop()


def test_clo_attention_only_and_exact_resume(env):
    model, data, root = env
    summary = run_training(_options(env, "full", heldout_dir=str(data)))
    start, end = _weights(model), _weights(root / "full" / "final")
    attention = {n for n in start if n.split(".")[-2] in ("q_proj", "k_proj", "v_proj", "o_proj")}
    assert attention and summary["trainable_mode"] == "attention"
    for name, tensor in start.items():
        if name in attention:
            assert not torch.equal(tensor, end[name]), f"{name} did not train"
        else:
            assert torch.equal(tensor, end[name]), f"{name} changed although frozen"

    log = [json.loads(line) for line in (root / "full" / "log.jsonl").read_text().splitlines()]
    steps = [row for row in log if "loss" in row]
    assert [row["step"] for row in steps] == [1, 2, 3, 4]
    for key in ("nll", "contrastive", "reward_margin", "reward_accuracy", "reward_margin_target",
                "reward_margin_source", "chosen_reward", "rejected_reward", "learning_rate"):
        assert key in steps[0], key
    # the first step sees policy == reference: margins exactly 0, DPO term log 2
    assert steps[0]["reward_margin"] == pytest.approx(0.0, abs=1e-5)
    assert steps[0]["contrastive"] == pytest.approx(0.693147, abs=1e-5)
    assert steps[0]["loss"] == pytest.approx(0.5 * steps[0]["nll"] + 0.5 * steps[0]["contrastive"], rel=1e-5)
    evaluation = json.loads((root / "full" / "eval.json").read_text())
    assert set(evaluation["before"]) == {"source_nll", "target_nll", "pairs"}
    assert evaluation["after"]["target_nll"] != evaluation["before"]["target_nll"]
    run = json.loads((root / "full" / "chatflow_run.json").read_text())
    assert run["reference"]["computed_pairs"] == 8 and run["pairs"] == 8
    # every checkpoint holds the start model's tokenizer files and loads as it is
    from transformers import AutoModelForCausalLM, AutoTokenizer
    for step in (2, 4):
        checkpoint = root / "full" / f"checkpoint-{step}"
        for name in TOKENIZER_FILES:
            assert (checkpoint / name).read_bytes() == (model / name).read_bytes(), (step, name)
        tok = AutoTokenizer.from_pretrained(checkpoint, local_files_only=True)
        assert AutoModelForCausalLM.from_pretrained(checkpoint).get_input_embeddings().num_embeddings == len(tok)
    last = _weights(root / "full" / "checkpoint-4")
    assert all(torch.equal(t, end[n]) for n, t in last.items())

    # interrupted after step 2, then resumed: the same weights as the uninterrupted run, the same log
    interrupted = run_training(_options(env, "resumed", heldout_dir=str(data)), callbacks=[StopAt(2).callback])
    assert interrupted.get("stopped_early") and not (root / "resumed" / "final").exists()
    with open(root / "resumed" / "log.jsonl", "a") as handle:   # a line written after the checkpoint
        handle.write(json.dumps({"step": 3, "loss": 99.0}) + "\n" + '{"step": 3, "lo')   # and a torn line
    resumed = run_training(_options(env, "resumed", resume="auto", heldout_dir=str(data)))
    assert resumed["eval"]["before"] == evaluation["before"]   # measured before the interruption, kept
    assert resumed["eval"]["after"] == pytest.approx(evaluation["after"], rel=1e-6)
    assert resumed["reference"]["computed_pairs"] == 0   # cache reused
    final = _weights(root / "resumed" / "final")
    for name, tensor in end.items():
        assert torch.equal(tensor, final[name]), name
    resumed_log = [json.loads(line) for line in (root / "resumed" / "log.jsonl").read_text().splitlines()]
    assert [r["loss"] for r in resumed_log if "loss" in r] == pytest.approx([r["loss"] for r in steps], rel=1e-6)

    # a finished run, resumed again with the same settings: nothing changes, and it says so
    before = _tree(root / "resumed")
    again = run_training(_options(env, "resumed", resume="auto", heldout_dir=str(data)))
    assert again["already_finished"] and again["global_step"] == 4
    assert _tree(root / "resumed") == before   # chatflow_run.json, log.jsonl, eval.json, checkpoint-N/, final/
    with pytest.raises(ChatflowError, match="already exists and holds a finished run"):
        run_training(_options(env, "resumed", resume="no"))
    with pytest.raises(ChatflowError, match=r"would change the run's meaning \(beta: 0.1 -> 0.2\); pass --allow_change beta"):
        run_training(_options(env, "resumed", resume="auto", beta=0.2))


def test_sft_baseline_trains_everything(env, capsys):
    model, data, root = env
    assert chatflow_main(["clo-train", "--model_path", str(model), "--data_dir", str(data), "--output_dir", str(root / "sft"),
                     "--objective", "sft", "--train_steps", "1", "--log_every", "1", "--micro_batch_size", "4",
                     "--learning_rate", "1e-3", "--warmup_steps", "0", "--max_length", "48", "--use_cpu", "--quiet",
                     "--max_pairs", "4", "--heldout_dir", str(data)]) == 0
    assert "sft on 4 items, 1 steps" in capsys.readouterr().out
    run = json.loads((root / "sft" / "chatflow_run.json").read_text())
    assert run["trainable_mode"] == "all" and run["parameters"]["trainable"] == run["parameters"]["total"]
    assert run["reference"] is None
    start, end = _weights(model), _weights(root / "sft" / "final")
    assert all(not torch.equal(start[n], end[n]) for n in start if "norm" not in n)
    log = [json.loads(line) for line in (root / "sft" / "log.jsonl").read_text().splitlines()]
    assert log[0]["nll"] == pytest.approx(log[0]["loss"], rel=1e-5)
    for name in ("tokenizer.model", "tokenizer_config.json", "config.json"):
        assert (root / "sft" / "final" / name).is_file()
    before = _tree(root / "sft")
    argv = ["--model_path", str(model), "--data_dir", str(data), "--output_dir", str(root / "sft"), "--objective", "sft",
            "--train_steps", "1", "--log_every", "1", "--micro_batch_size", "4", "--learning_rate", "1e-3",
            "--warmup_steps", "0", "--max_length", "48", "--use_cpu", "--quiet", "--max_pairs", "4", "--resume", "auto"]
    assert chatflow_main(["clo-train", *argv]) == 0
    finished = f"{root / 'sft'}: finished (1 steps); the final model is {root / 'sft' / 'final'}\n"
    assert capsys.readouterr().out == finished
    assert _tree(root / "sft") == before


def test_option_errors(env):
    for overrides, message in ((dict(objective="dpo"), "--objective"), (dict(lam=2.0), "--lam"),
                               (dict(beta=0.0), "--beta"), (dict(max_pairs=100), "the data has 8 pairs"),
                               (dict(model_path="/nonexistent"), "no config.json")):
        with pytest.raises(ChatflowError, match=message):
            run_training(_options(env, "bad", **overrides))
    with pytest.raises(ChatflowError, match="--sft_languages"):
        sft_sequences([[1, 2, 3, 4]], "all")
    assert sft_sequences([[1, 2, 3, 4]], "both") == [1, 3]
    assert sft_sequences([[1, 2, 3, 4]], "source") == [1] and sft_sequences([[1, 2, 3, 4]], "target") == [3]


def test_steps_from_epochs_a_checkpoint_at_the_end_and_the_resume_modes(env):
    """--train_steps 0 (or -1): --epochs passes; --save_every 0: only the last step is saved; -1 and 0 are
    one setting; --resume no refuses a run, --resume PATH continues from that checkpoint."""
    model, data, root = env
    epochs = dict(train_steps=0, epochs=1.0, micro_batch_size=4, save_every=0, objective="sft", max_pairs=4,
                  sft_languages="both")                                     # 8 sequences: 2 steps of 4
    summary = run_training(_options(env, "epochs", **epochs))
    assert summary["global_step"] == 2 and summary["items"] == 8
    assert sorted(p.name for p in (root / "epochs").glob("checkpoint-*")) == ["checkpoint-2"]
    assert json.loads((root / "epochs" / "chatflow_run.json").read_text())["settings"]["train_steps"] == -1
    again = run_training(_options(env, "epochs", **dict(epochs, train_steps=-1)))
    assert again["already_finished"] and again["global_step"] == 2
    with pytest.raises(ChatflowError, match="already holds checkpoints"):
        run_training(_options(env, "epochs", resume="no", **epochs))
    with pytest.raises(ChatflowError, match="not a Trainer checkpoint"):
        run_training(_options(env, "epochs", resume=str(root / "epochs"), **epochs))

    stepwise = dict(epochs, save_every=1)
    interrupted = run_training(_options(env, "path", **stepwise), callbacks=[StopAt(1).callback])
    assert interrupted.get("stopped_early")
    resumed = run_training(_options(env, "path", resume=str(root / "path" / "checkpoint-1"),
                                    **stepwise))
    assert resumed["global_step"] == 2 and (root / "path" / "final" / "config.json").is_file()
    for name, tensor in _weights(root / "epochs" / "final").items():
        assert torch.equal(tensor, _weights(root / "path" / "final")[name]), name
    steps = [r["step"] for r in map(json.loads, (root / "path" / "log.jsonl").read_text().splitlines()) if "loss" in r]
    assert steps == [1, 2]


def test_step_and_interval_errors(env):
    for overrides, message in ((dict(train_steps=-2), "--train_steps must be positive, or -1 or 0"),
                               (dict(train_steps=0, epochs=0.0), "--epochs must be positive"),
                               (dict(micro_batch_size=0), "--micro_batch_size must be positive"),
                               (dict(log_every=0), "--log_every must be positive"),
                               (dict(save_every=-1), "--save_every must be 0")):
        with pytest.raises(ChatflowError, match=message):
            run_training(_options(env, "bad", **overrides))


@pytest.mark.parametrize("family", ["llama3", "qwen2", "mistral"])
def test_clo_trains_every_family(tmp_path, family, byte_bpe_dir, qwen2_bpe_dir, spm_model, env):
    """CLO's attention-only training on LLaMA-3 (byte-level BPE, GQA), Qwen2 (q/k/v biases train too; no BOS)
    and Mistral (sliding window) models; the model's own tokenizer files are saved with it."""
    from model_families import tiny_family_model

    tokenizer = {"llama3": byte_bpe_dir, "qwen2": qwen2_bpe_dir, "mistral": spm_model}[family]
    model = tiny_family_model(tmp_path / "model", family, tokenizer)
    summary = run_training(_options(env, tmp_path / "run", model_path=str(model), train_steps=2, save_every=0))
    assert summary["trainable_mode"] == "attention"
    start, end = _weights(model), _weights(tmp_path / "run" / "final")
    changed = {name for name in start if not torch.equal(start[name], end[name])}
    assert changed and all(name.split(".")[-2] in ("q_proj", "k_proj", "v_proj", "o_proj") for name in changed)
    if family == "qwen2":
        assert any(name.endswith("q_proj.bias") for name in changed)
    assert (tmp_path / "run" / "final" / "tokenizer.json").read_bytes() == (model / "tokenizer.json").read_bytes()


def test_clo_train_writes_train_s_layout_and_refuses_an_old_layout_folder(env, tmp_path, capsys):
    """clo-train's run folder is chatflow train's (chatflow_run.json, checkpoint-N/, final/); a folder of the older
    layout (run.json, checkpoints/, model/) is refused, untouched, with what to do; --force replaces it."""
    old = tmp_path / "old"
    (old / "checkpoints" / "checkpoint-2").mkdir(parents=True)
    (old / "model").mkdir()
    (old / "run.json").write_text("{}")
    before = _tree(old)
    with pytest.raises(ChatflowError, match=r"older layout \(run.json, checkpoints, model\).*--model_path .*model"):
        run_training(_options(env, old, train_steps=1, save_every=0))
    assert _tree(old) == before
