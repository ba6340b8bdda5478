"""TencentPretrain adapter logic that needs no host: argv handling, parser extension, rank slices,
batch form, run state and resume position, the log line, host discovery errors."""
from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from chatflow_plugin.data.batches import MixtureDataset
from chatflow_plugin.errors import ChatflowError
from chatflow_plugin.hosts.tencentpretrain import host as tp
from chatflow_plugin.hosts.tencentpretrain.batches import RankStream, SampleLog, host_batch, read_sample_log
from chatflow_plugin.hosts.tencentpretrain.launch import (GIVEN, extend_host_parser, given_options,
                                                          host_parser_extended, normalize_argv,
                                                          run_host_script, runtime_defaults, translate_target)
from chatflow_plugin.data.runstate import STATE_FILE, STATE_SUFFIX, read_state, write_state
from chatflow_plugin.hosts.tencentpretrain.progress import deepspeed_tag, format_report, resume_position
from chatflow_plugin.data.mixture import load_mixture
from chatflow_plugin.data.preprocess import preprocess
from chatflow_plugin.data.shards import ShardSet

ROOT = Path(__file__).resolve().parents[2]


# -- argv -------------------------------------------------------------------------------------

def test_normalize_argv_splits_equals_and_leaves_the_rest():
    argv = ["--a=1", "--b", "2", "-c=3", "--d=x=y", "--", "--e=5"]
    assert normalize_argv(argv) == ["--a", "1", "--b", "2", "-c=3", "--d", "x=y", "--", "--e=5"]
    assert normalize_argv([]) == []


def test_given_options_are_the_flag_names():
    assert given_options(["--seq_length", "64", "--deepspeed", "x", "-v", "--"]) == {"seq_length", "deepspeed"}


def test_runtime_defaults_fill_only_what_is_missing():
    env = {"WORLD_SIZE": "2", "LOCAL_RANK": "1"}
    out = runtime_defaults(["--deepspeed"], env, cuda_available=False)
    assert out == ["--deepspeed", "--world_size", "2", "--backend", "gloo"]
    out = runtime_defaults(["--deepspeed", "--world_size", "4", "--backend", "nccl"], env, cuda_available=True)
    assert out == ["--deepspeed", "--world_size", "4", "--backend", "nccl", "--local_rank", "1"]
    assert runtime_defaults(["--x", "1"], {}, cuda_available=False) == ["--x", "1"]
    assert runtime_defaults([], {"WORLD_SIZE": "1"}, cuda_available=False) == []


def _host_like_parser(script: str) -> argparse.ArgumentParser:
    """The shape of the host's parsers: fixed choices, required corpus_path for preprocess."""
    parser = argparse.ArgumentParser()
    if script == "preprocess":
        parser.add_argument("--corpus_path", required=True)
        parser.add_argument("--seq_length", type=int, default=128)
    parser.add_argument("--total_steps", type=int, default=100)
    parser.add_argument("--data_processor", choices=["bert", "lm"], default="bert")
    parser.add_argument("--target", choices=["lm", "mlm"], default="mlm", nargs="+")
    return parser


def test_extended_parser_accepts_plugin_names_and_options():
    argv = ["--data_processor", "dynamic_mixture", "--mixture_config", "m.json", "--source_path", "a=x",
            "--source_path", "b=y", "--on_bad_record", "fail"]
    parser = _host_like_parser("preprocess")
    extend_host_parser(parser, "preprocess", argv)
    extend_host_parser(parser, "preprocess", argv)          # idempotent: no duplicate options
    args = parser.parse_args(argv)
    assert args.data_processor == "dynamic_mixture" and args.corpus_path is None
    assert args.mixture_config == "m.json" and args.source_path == ["a=x", "b=y"]
    assert args.on_bad_record == "fail" and args.overwrite_dataset is False


def test_corpus_path_stays_required_for_stock_processors():
    parser = _host_like_parser("preprocess")
    extend_host_parser(parser, "preprocess", ["--data_processor", "lm"])
    with pytest.raises(SystemExit):
        parser.parse_args(["--data_processor", "lm"])


def test_abbreviated_options_are_refused_not_misread():
    # the host's load_hyperparam looks options up by their exact name in sys.argv
    parser = _host_like_parser("pretrain")
    extend_host_parser(parser, "pretrain", [])
    with pytest.raises(SystemExit):
        parser.parse_args(["--total_step", "5"])


def test_pretrain_plugin_options():
    parser = _host_like_parser("pretrain")
    extend_host_parser(parser, "pretrain", [])
    args = parser.parse_args(["--data_processor", "dynamic_mixture", "--target", "chatflow_instruction",
                              "--response_only_loss", "--start_step", "7", "--sample_log", "s.jsonl"])
    assert args.target == ["chatflow_instruction"] and args.response_only_loss and args.start_step == 7
    assert args.sample_log == "s.jsonl" and args.mixture_config is None


def test_translate_target_builds_the_stock_module_and_flags_the_run():
    ns = argparse.Namespace(target=["chatflow_instruction"])
    translate_target(ns)
    assert ns.target == ["lm"] and ns.chatflow_instruction is True
    ns = argparse.Namespace(target=["lm"])
    translate_target(ns)
    assert ns.target == ["lm"] and not hasattr(ns, "chatflow_instruction")
    with pytest.raises(ChatflowError, match="give one of them"):
        translate_target(argparse.Namespace(target=["lm", "chatflow_instruction"]))


def test_parser_extension_is_scoped_and_records_given_options():
    original = argparse.ArgumentParser.parse_args
    argv = ["--data_processor", "dynamic_mixture", "--target", "chatflow_instruction", "--total_steps", "3"]
    with host_parser_extended("pretrain", argv):
        unrelated = argparse.ArgumentParser()
        unrelated.add_argument("--x", default=1)
        assert unrelated.parse_args([]).x == 1 and not hasattr(unrelated, "_chatflow_extended")
        args = _host_like_parser("pretrain").parse_args(argv)
    assert argparse.ArgumentParser.parse_args is original
    assert getattr(args, GIVEN) == {"data_processor", "target", "total_steps"}
    assert args.target == ["lm"] and args.chatflow_instruction


def test_run_host_script_rejects_unknown_scripts():
    with pytest.raises(ValueError):
        run_host_script("finetune", [])


def test_run_host_script_reports_a_missing_host_cleanly(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv(tp.HOME_VARIABLE, str(tmp_path))
    assert run_host_script("preprocess", ["--data_processor", "lm"]) == 2
    err = capsys.readouterr().err
    assert "preprocess.py: error:" in err and "not a TencentPretrain work tree" in err


# -- host discovery ---------------------------------------------------------------------------

def test_locate_host_errors_name_the_problem(monkeypatch, tmp_path):
    monkeypatch.setenv(tp.HOME_VARIABLE, str(tmp_path / "nowhere"))
    with pytest.raises(ChatflowError, match="not a TencentPretrain work tree"):
        tp.locate_host()
    monkeypatch.delenv(tp.HOME_VARIABLE)
    monkeypatch.setattr(tp.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ChatflowError, match="TENCENTPRETRAIN_HOME"):
        tp.locate_host()


def test_locate_host_accepts_a_work_tree(monkeypatch, tmp_path):
    (tmp_path / "tencentpretrain").mkdir()
    (tmp_path / "tencentpretrain" / "__init__.py").write_text("")
    monkeypatch.setenv(tp.HOME_VARIABLE, str(tmp_path))
    monkeypatch.setattr(tp.sys, "path", list(tp.sys.path))
    monkeypatch.delitem(tp.sys.modules, "tencentpretrain", raising=False)
    assert tp.locate_host() == tmp_path.resolve()
    assert str(tmp_path.resolve()) in tp.sys.path


def test_special_tokens_map_is_llama_and_found_from_anywhere(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    root = tp.special_tokens_root()
    tokens = json.loads((root / tp.SPECIAL_TOKENS_MAP).read_text())
    assert root == ROOT and tokens["cls_token"] == "<s>" and tokens["sep_token"] == "</s>"
    assert tokens["unk_token"] == "<unk>"


def test_llama2_optimizer_options_and_scheduler_choice():
    parser = _host_like_parser("pretrain")
    parser.add_argument("--scheduler", choices=["linear", "cosine"], default="linear")
    extend_host_parser(parser, "pretrain", [])
    args = parser.parse_args(["--scheduler", "cosine_with_min_lr", "--weight_decay", "0.1", "--adam_beta2", "0.95",
                              "--adam_bias_correction"])
    assert (args.scheduler, args.weight_decay, args.adam_beta2, args.adam_bias_correction) == \
        ("cosine_with_min_lr", 0.1, 0.95, True)
    defaults = parser.parse_args([])
    assert (defaults.weight_decay, defaults.adam_beta2, defaults.adam_bias_correction) == (None, None, False)


def _pretrain_args(argv):
    """The host's pretraining options as the launcher hands them over (the host's own defaults included)."""
    parser = _host_like_parser("pretrain")
    parser.add_argument("--learning_rate", type=float, default=2e-5)
    parser.add_argument("--warmup", type=float, default=0.1)
    parser.add_argument("--scheduler", choices=["linear", "cosine"], default="linear")
    with host_parser_extended("pretrain", argv):
        return parser.parse_args(argv)


def test_dynamic_mixture_runs_get_llama2_hyperparameters_unless_given():
    from chatflow_plugin.hosts.hyperparameters import LLAMA2
    args = _pretrain_args(["--data_processor", "dynamic_mixture"])
    assert (args.learning_rate, args.scheduler, args.warmup_steps, args.weight_decay, args.adam_beta2,
            args.adam_epsilon, args.adam_bias_correction, args.max_grad_norm) == \
        (3e-4, "cosine_with_min_lr", 2000, 0.1, 0.95, 1e-5, True, 1.0) == \
        (LLAMA2.learning_rate, LLAMA2.lr_scheduler, LLAMA2.warmup_steps, LLAMA2.weight_decay, LLAMA2.adam_beta2,
         LLAMA2.adam_epsilon, True, LLAMA2.max_grad_norm)
    mine = _pretrain_args(["--data_processor", "dynamic_mixture", "--learning_rate", "1e-4", "--scheduler", "cosine",
                           "--warmup_steps", "0.05", "--adam_epsilon", "1e-8", "--no_adam_bias_correction",
                           "--max_grad_norm", "0"])
    assert (mine.learning_rate, mine.scheduler, mine.warmup_steps, mine.adam_epsilon, mine.adam_bias_correction,
            mine.max_grad_norm) == (1e-4, "cosine", 0.05, 1e-8, False, 0.0)
    host_warmup = _pretrain_args(["--data_processor", "dynamic_mixture", "--warmup", "0.02"])
    assert host_warmup.warmup_steps is None and host_warmup.warmup == 0.02      # the host's fraction, as given
    stock = _pretrain_args(["--data_processor", "lm"])                              # other processors: the host's
    assert (stock.learning_rate, stock.scheduler, stock.adam_epsilon, stock.weight_decay) == (2e-5, "linear", None, None)
    for argv, message in ((["--warmup", "0.1", "--warmup_steps", "10"], "give the warm-up once"),
                          (["--adam_bias_correction", "--no_adam_bias_correction"], "not both"),
                          (["--adam_epsilon", "-1"], "--adam_epsilon must be a finite number >= 0"),
                          (["--warmup_steps", "10.5"], "give whole optimizer steps"),
                          (["--adam_beta2", "1"], "--adam_beta2 must be in")):
        with pytest.raises(ChatflowError, match=message):
            _pretrain_args(["--data_processor", "dynamic_mixture", *argv])


def _optimizer_args(tmp_path, **kw):
    import logging
    config = tmp_path / "ds.json"
    config.write_text(json.dumps({"gradient_accumulation_steps": 4, "bf16": {"enabled": True}}))
    base = dict(data_processor="dynamic_mixture", total_steps=800, accumulation_steps=1, deepspeed=True,
                deepspeed_config=str(config), scheduler="cosine_with_min_lr", warmup=0.05, learning_rate=1e-3,
                weight_decay=0.1, adam_beta2=0.95, adam_bias_correction=True, logger=logging.getLogger("test"))
    base.update(kw)
    return argparse.Namespace(**base)


def _host_init_optimizer(seen):
    """The host's init_optimizer as far as the wrapper sees it: decayed/undecayed groups, betas, no bias correction,
    its scheduler over args.total_steps."""
    def init_optimizer(args, model):
        seen.append(args.total_steps)
        groups = [{"params": [model.weight], "weight_decay": 0.01}, {"params": [model.bias], "weight_decay": 0.0}]
        optimizer = torch.optim.AdamW(groups, lr=args.learning_rate)
        for group in optimizer.param_groups:
            group["correct_bias"] = False
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
        return optimizer, scheduler, groups
    return init_optimizer


def test_llama2_optimizer_counts_the_schedule_in_optimizer_steps_and_sets_adamw(tmp_path):
    from chatflow_plugin.hosts.tencentpretrain.optimizer import _wrap, accumulation
    seen = []
    args = _optimizer_args(tmp_path)
    assert accumulation(args) == 4 and accumulation(_optimizer_args(tmp_path, accumulation_steps=2)) == 8
    optimizer, scheduler, _ = _wrap(_host_init_optimizer(seen))(args, torch.nn.Linear(2, 2))
    assert seen == [200] and args.total_steps == 800 and args.scheduler == "cosine_with_min_lr"   # restored
    decayed, plain = optimizer.param_groups
    assert decayed["weight_decay"] == 0.1 and plain["weight_decay"] == 0.0
    assert decayed["betas"] == (0.9, 0.95) and decayed["correct_bias"] is True
    lrs = []
    for _ in range(260):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    # warm-up over 5% of 200 optimizer steps, cosine to 10% of the peak at step 200, held after
    assert lrs[0] == 0 and lrs[5] == pytest.approx(5e-4) and lrs[10] == pytest.approx(1e-3)
    assert lrs[105] == pytest.approx(1e-4 + 0.9e-3 * 0.5)
    assert lrs[200] == pytest.approx(1e-4) and lrs[259] == pytest.approx(1e-4)
    # other data processors get the host's function untouched
    stock = _optimizer_args(tmp_path, data_processor="lm")
    optimizer, _, _ = _wrap(_host_init_optimizer(seen))(stock, torch.nn.Linear(2, 2))
    assert seen[-1] == 800 and optimizer.param_groups[0]["weight_decay"] == 0.01
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"gradient_accumulation_steps": "auto"}))
    with pytest.raises(ChatflowError, match="gradient_accumulation_steps must be a positive integer"):
        accumulation(_optimizer_args(tmp_path, deepspeed_config=str(bad)))


def test_model_configs_are_llama2():
    seven = json.loads((ROOT / "models/llama2/7b_config.json").read_text())
    assert seven["vocab_size"] == 32000 + 8701 + 62
    assert (seven["hidden_size"], seven["layers_num"], seven["heads_num"], seven["feedforward_size"]) == (4096, 32, 32, 11008)
    tiny = json.loads((ROOT / "models/llama2/tiny_config.json").read_text())
    for key in ("layernorm", "feed_forward", "mask", "rotary_position_embedding", "remove_transformer_bias"):
        assert tiny[key] == seven[key]
    stages = {name: json.loads((ROOT / f"models/deepspeed_{name}_config.json").read_text())["zero_optimization"]["stage"]
              for name in ("zero2", "zero3", "cpu")}
    assert stages == {"zero2": 2, "zero3": 3, "cpu": 1}
    for name in ("zero2", "zero3"):      # the paper trained in bfloat16; LLaMA-2 clipped gradients at 1.0
        config = json.loads((ROOT / f"models/deepspeed_{name}_config.json").read_text())
        assert config["bf16"] == {"enabled": True} and "fp16" not in config and config["gradient_clipping"] == 1.0


# -- samples and batches ----------------------------------------------------------------------

def rank_sample_indices(samples_before, step, micro_batch_size, rank, world_size):
    """The samples the adapter's dataloader reads on ``rank`` at ``step`` of a run that starts after
    ``samples_before`` samples."""
    return RankStream(None, micro_batch_size, rank, world_size, samples_before).indices(step)


def test_rank_slices_are_disjoint_and_cover_the_single_process_order():
    b, steps = 3, 5
    single = np.concatenate([rank_sample_indices(0, s, 2 * b, 0, 1) for s in range(steps)])
    ranks = [np.concatenate([rank_sample_indices(0, s, b, r, 2) for s in range(steps)]) for r in range(2)]
    assert not set(ranks[0]) & set(ranks[1])
    assert sorted(np.concatenate(ranks)) == single.tolist() == list(range(2 * b * steps))


def test_resume_offset_continues_exactly_even_with_another_world():
    first = np.concatenate([rank_sample_indices(0, s, 4, 0, 1) for s in range(3)])          # 12 samples
    after = np.concatenate([rank_sample_indices(12, s, 2, r, 2) for s in range(2) for r in range(2)])
    assert first.tolist() + after.tolist() == list(range(20))
    with pytest.raises(ValueError):
        rank_sample_indices(0, 0, 2, 2, 2)
    with pytest.raises(ValueError):
        rank_sample_indices(-1, 0, 2, 0, 1)


@pytest.fixture(scope="module")
def shards(tmp_path_factory, spm_model):
    root = tmp_path_factory.mktemp("tp_unit")
    rng = random.Random(0)
    words = "a river school teacher music book reads old the".split()
    (root / "en.jsonl").write_text("".join(json.dumps({"text": " ".join(rng.choice(words) for _ in range(12))}) + "\n"
                                           for _ in range(60)))
    (root / "inst.jsonl").write_text("".join(json.dumps({"instruction": "say " + rng.choice(words), "output": "ok " + rng.choice(words)}) + "\n"
                                             for _ in range(60)))
    mixture = {"name": "u", "seq_length": 16, "T_grow": 30, "seed": 5, "data_root": str(root), "groups": [
        {"name": "en", "alpha": 0.5, "beta": 0.5, "sources": [{"name": "en", "kind": "corpus", "paths": ["en.jsonl"]}]},
        {"name": "inst", "alpha": 0.5, "beta": 0.5, "sources": [{"name": "inst", "kind": "instruction", "paths": ["inst.jsonl"]}]}]}
    (root / "m.json").write_text(json.dumps(mixture))
    preprocess(load_mixture(root / "m.json"), spm_model, root / "ds", workers=1)
    return ShardSet(root / "ds")


def test_host_batch_is_src_tgt_seg_group(shards):
    ds = MixtureDataset(shards)
    batch = ds.batch(np.arange(6))
    src, tgt, seg, group = host_batch(batch)
    assert src.dtype == tgt.dtype == seg.dtype == group.dtype == torch.int64
    assert src.shape == tgt.shape == seg.shape == (6, 16) and group.shape == (6,)
    assert torch.equal(src, torch.from_numpy(batch["tokens"][:, :-1]))
    assert torch.equal(tgt, torch.from_numpy(batch["tokens"][:, 1:]))
    assert torch.equal(seg, torch.from_numpy(batch["loss_mask"].astype(np.int64)))
    assert torch.equal(group, torch.from_numpy(batch["group"]))


def test_response_only_masks_prompts_in_seg(shards):
    every = host_batch(MixtureDataset(shards).batch(np.arange(40)))
    response = host_batch(MixtureDataset(shards, response_only=True).batch(np.arange(40)))
    inst = every[3] == 1
    assert torch.equal(every[2][~inst], response[2][~inst])                 # corpus rows unchanged
    assert response[2][inst].sum() < every[2][inst].sum()                    # prompts lose their loss
    assert bool(((response[2] == 1) <= (every[2] == 1)).all())


def test_rank_stream_reads_the_order_of_its_former_own_indexing(shards):
    """The adapter now shifts the core's rank_indices by the resumed sample count; every rank reads
    exactly what its former own formula (start = before + (step * world + rank) * B) gave, and the
    batches are the mixture's batches of those samples."""
    ds = MixtureDataset(shards)
    for world, b, before in ((1, 4, 0), (2, 3, 0), (3, 2, 7), (2, 5, 12)):
        for rank in range(world):
            stream = RankStream(ds, b, rank, world, samples_before=before)
            for step, batch in zip(range(4), stream):
                start = before + (step * world + rank) * b
                assert stream.last_indices.tolist() == list(range(start, start + b))
                expected = host_batch(ds.batch(np.arange(start, start + b)))
                assert all(torch.equal(x, y) for x, y in zip(batch, expected))
            assert stream.samples_done == before + 4 * b * world


def test_sample_log_round_trip_and_per_rank_files(tmp_path):
    log = SampleLog(tmp_path / "s.jsonl", rank=1, world_size=2)
    log.write(1, [2, 3], [0, 1])
    log.write(2, [6, 7], [1, 1])
    log.write(2, [6, 7], [1, 1])
    log.close()
    assert log.path.endswith("s.jsonl.rank1")
    assert read_sample_log(log.path) == {1: [2, 3], 2: [6, 7]}
    single = SampleLog(tmp_path / "one.jsonl", rank=0, world_size=1)
    assert single.path == str(tmp_path / "one.jsonl")
    single.close()


# -- run state --------------------------------------------------------------------------------

def test_state_round_trip_and_damage(tmp_path):
    path = tmp_path / "x" / STATE_FILE
    write_state(path, step=6, samples_done=24, micro_batch_size=4, world_size=1, dataset="/d")
    assert read_state(path) == {"step": 6, "samples_done": 24, "micro_batch_size": 4, "world_size": 1, "dataset": "/d"}
    assert read_state(tmp_path / "missing.json") is None
    path.write_text("{not json")
    with pytest.raises(ChatflowError, match="unreadable chatflow run state"):
        read_state(path)


def _model_states(folder: Path) -> None:
    """What a stock DeepSpeed save leaves in a tag folder (a torch zip file)."""
    folder.mkdir(parents=True, exist_ok=True)
    torch.save({"module": {}}, folder / "mp_rank_00_model_states.pt")


def test_resume_position_from_a_deepspeed_checkpoint(tmp_path):
    ckpt = tmp_path / "ckpt"
    _model_states(ckpt / "6")
    (ckpt / "latest").write_text("6")
    # without the plugin's record (stock trainer): the tag is the step, samples = step * global batch
    pos = resume_position(8, resume_from_checkpoint=str(ckpt))
    assert (pos.steps_done, pos.samples_done) == (6, 48)
    # with it: the recorded sample count wins (it survives a change of world size)
    write_state(ckpt / "6" / STATE_FILE, step=6, samples_done=24, micro_batch_size=4, world_size=1, dataset="d")
    pos = resume_position(8, resume_from_checkpoint=str(ckpt))
    assert (pos.steps_done, pos.samples_done) == (6, 24) and STATE_FILE in pos.origin
    # an explicit --start_step wins over the checkpoint
    assert resume_position(8, resume_from_checkpoint=str(ckpt), start_step=2).samples_done == 16


def test_resume_position_errors_and_defaults(tmp_path):
    assert resume_position(8) == resume_position(8, start_step=0)
    assert (resume_position(8).steps_done, resume_position(8).samples_done) == (0, 0)
    with pytest.raises(ChatflowError, match="no 'latest' file"):
        resume_position(8, resume_from_checkpoint=str(tmp_path))
    (tmp_path / "latest").write_text("global_step7")
    _model_states(tmp_path / "global_step7")
    with pytest.raises(ChatflowError, match="not a step number"):
        resume_position(8, resume_from_checkpoint=str(tmp_path))
    assert deepspeed_tag(tmp_path) == "global_step7"


def test_start_step_uses_the_record_beside_a_plain_checkpoint(tmp_path):
    model = tmp_path / "m-10"
    model.write_bytes(b"")
    write_state(f"{model}{STATE_SUFFIX}", step=10, samples_done=35, micro_batch_size=4, world_size=1, dataset="d")
    assert resume_position(4, start_step=10, pretrained_model_path=str(model)).samples_done == 35
    assert resume_position(4, start_step=9, pretrained_model_path=str(model)).samples_done == 36


# -- the log line ----------------------------------------------------------------------------

def test_format_report_has_host_fields_groups_and_weights():
    line = format_report(20, 40, 1234.5, 3.25, ["en", "zh"], [2.5, None], [0.75, 0.25])
    assert line.startswith("|       20/      40 steps|  1234.50 tokens/s| loss    3.25")
    assert "group loss: en 2.500 zh -" in line and line.endswith("p: en 0.750 zh 0.250")
    assert "group loss" not in format_report(1, 2, 1.0, 1.0, ["en"], None, [1.0])


def test_preflight_checks_dataset_tokenizer_and_config_early(shards, spm_model, unigram_spm_model, tmp_path):
    from chatflow_plugin.hosts.tencentpretrain.launch import preflight_pretrain

    base = ["--data_processor", "dynamic_mixture", "--dataset_path", str(shards.path), "--spm_model_path", str(spm_model)]
    preflight_pretrain(base)                                       # fine
    preflight_pretrain(["--data_processor", "lm"])                 # stock processors are not checked
    with pytest.raises(ChatflowError, match="another tokenizer"):
        preflight_pretrain(base[:-1] + [str(unigram_spm_model)])
    with pytest.raises(ChatflowError, match="missing"):
        preflight_pretrain(base[:3] + [str(tmp_path)] + base[4:])
    with pytest.raises(ChatflowError, match="needs --spm_model_path"):
        preflight_pretrain(base[:4])
    config = tmp_path / "c.json"
    config.write_text(json.dumps({"vocab_size": 40763}))
    with pytest.raises(ChatflowError, match="40763-piece vocabulary but .* has 600 pieces"):
        preflight_pretrain(base + ["--config_path", str(config)])
    config.write_text(json.dumps({"vocab_size": 600}))
    preflight_pretrain(base + ["--config_path", str(config)])


def test_a_config_target_goes_through_the_command_line(tmp_path):
    from chatflow_plugin.hosts.tencentpretrain.launch import target_from_config

    config = tmp_path / "c.json"
    config.write_text(json.dumps({"target": ["chatflow_instruction"]}))
    argv = ["--config_path", str(config)]
    assert target_from_config(argv) == argv + ["--target", "chatflow_instruction"]
    assert target_from_config(argv + ["--target", "lm"]) == argv + ["--target", "lm"]
    config.write_text(json.dumps({"target": ["lm"]}))
    assert target_from_config(argv) == argv
    config.write_text("{")
    with pytest.raises(ChatflowError, match="unreadable"):
        target_from_config(argv)


def test_preflight_preprocess_names_the_missing_file(tmp_path, spm_model):
    from chatflow_plugin.hosts.tencentpretrain.launch import preflight_preprocess

    mixture = tmp_path / "m.json"
    mixture.write_text("{}")
    base = ["--data_processor", "dynamic_mixture"]
    preflight_preprocess(base + ["--mixture_config", str(mixture), "--spm_model_path", str(spm_model)])
    preflight_preprocess(["--data_processor", "lm"])
    with pytest.raises(ChatflowError, match="needs --mixture_config"):
        preflight_preprocess(base + ["--spm_model_path", str(spm_model)])
    with pytest.raises(ChatflowError, match="--spm_model_path .*nope.model: no such file"):
        preflight_preprocess(base + ["--mixture_config", str(mixture), "--spm_model_path", str(tmp_path / "nope.model")])


# -- the run's mixture on the host: resume plan, layout changes, adaptive updates (no host needed) -----------

def _host_run(shards, micro=4, accumulation=1, world=1, spec=None, log=None):
    from chatflow_plugin.data.batches import MixtureDataset
    from chatflow_plugin.hosts.tencentpretrain.mixing import HostRun

    layout = {"micro_batch_size": micro, "gradient_accumulation_steps": accumulation, "world_size": world}
    return HostRun(MixtureDataset(shards, spec=spec), layout, "/d", log=log)


def test_host_run_converts_steps_across_layouts_and_refuses_what_is_not_allowed(shards):
    first = _host_run(shards, micro=4, accumulation=1, world=2)        # global batch 8
    first.resume(0, None, [], None, 0.0, "ckpt")
    state = first.state(6, 48)
    assert state["global_batch"] == 8 and state["gradient_accumulation_steps"] == 1 and state["history"] == []
    lines = []
    same = _host_run(shards, micro=2, accumulation=2, world=2, log=lines.append)   # same global batch
    assert same.resume(6, state, [], None, 0.0, "ckpt") == 12                    # 6 optimizer steps x 2
    assert [(e["what"], e["old"], e["new"]) for e in same.changes] == [("micro_batch_size", 4, 2),
                                                                       ("gradient_accumulation_steps", 1, 2)]
    assert "micro_batch_size changed at step 6 (sample 48): 4 -> 2" in lines[0]
    with pytest.raises(ChatflowError, match=r"global_batch: 8 -> 16.*--allow_change global_batch"):
        _host_run(shards, micro=8, world=2).resume(6, state, [], None, 0.0, "ckpt")
    bigger = _host_run(shards, micro=8, world=2)
    assert bigger.resume(6, state, ["global_batch"], None, 0.0, "ckpt") == 6
    assert bigger.changes[0]["what"] == "global_batch" and bigger.changes[0]["sample"] == 48
    inside = dict(_host_run(shards, micro=4, accumulation=2).state(3, 24))
    with pytest.raises(ChatflowError, match="inside an accumulation of 2 micro-batches"):
        _host_run(shards, micro=2, accumulation=4).resume(3, inside, [], None, 0.0, "ckpt")


def test_host_run_applies_a_mixture_change_from_the_checkpoints_sample(shards, tmp_path):
    from chatflow_plugin.data.mixture import parse_mixture

    run = _host_run(shards)
    run.resume(0, None, [], None, 0.0, "ckpt")
    before = run.dataset.batch(np.arange(64))
    state = run.state(4, 16)
    data = json.loads(json.dumps(shards.manifest["mixture"]))
    data["groups"][1].update(alpha=9.0, beta=9.0)
    changed = parse_mixture(data)
    with pytest.raises(ChatflowError, match="--allow_change mixture"):
        _host_run(shards, spec=changed).resume(4, state, [], "new.json", 0.0, "ckpt")
    resumed = _host_run(shards, spec=changed)
    resumed.resume(4, state, ["mixture"], "new.json", 0.0, "ckpt")
    after = resumed.dataset.batch(np.arange(64))
    np.testing.assert_array_equal(after["tokens"][:16], before["tokens"][:16])
    assert (after["group"][16:] == 1).sum() > (before["group"][16:] == 1).sum()
    (entry,) = resumed.changes
    assert (entry["what"], entry["step"], entry["sample"], entry["by"]) == ("mixture", 4, 16, "new.json")
    # a later resume from a checkpoint with that history and the same file changes nothing more
    again = _host_run(shards, spec=changed)
    again.resume(8, resumed.state(8, 32), [], "new.json", 0.0, "ckpt")
    assert again.changes == resumed.changes and len(again.dataset.history) == 2


def test_host_run_adaptive_updates_are_recorded_revisions(shards):
    from chatflow_plugin.data.mixture import parse_mixture

    data = json.loads(json.dumps(shards.manifest["mixture"]))
    data["adaptive"] = {"signal": "loss", "every_samples": 8, "smoothing": 0.0}
    run = _host_run(shards, spec=parse_mixture(data))
    run.resume(0, None, [], None, 0.0, "ckpt")
    assert run.needs_heldout() and run.adaptive_due(4, 8) and not run.adaptive_due(8, 12)
    names = run.dataset.group_names
    run.adapt(0, 0, {names[0]: 3.0, names[1]: 4.0}, lambda v: v)
    assert run.changes == [] and run.adaptive["losses"] == {names[0]: 3.0, names[1]: 4.0}
    run.dataset.batch(np.arange(8))
    run.adapt(2, 8, {names[0]: 2.0, names[1]: 4.0}, lambda v: v)
    (entry,) = run.changes
    assert entry["by"] == "adaptive" and entry["sample"] == 8 and entry["new"]["factors"][names[1]] > 1
    assert run.dataset.history.revisions[-1].sample == 8


def test_heldout_losses_weigh_batches_by_their_tokens(shards):
    import torch

    from chatflow_plugin.data.heldout import HeldOutSet
    from chatflow_plugin.hosts.tencentpretrain.mixing import heldout_losses

    class Fake(torch.nn.Module):
        def forward(self, src, tgt, seg):     # the stock lm target: the batch's token-mean loss
            return (tgt.float() * (seg > 0)).sum() / (seg > 0).sum()

    held = HeldOutSet(shards, max_windows=5)
    out = heldout_losses(Fake(), held, batch_size=2)
    for group, windows in held.windows.items():
        carries = held.carries[group]
        assert out[group] == pytest.approx(float((windows[:, 1:] * carries).sum() / carries.sum()))


def test_a_zero_checkpoint_on_another_number_of_ranks_is_refused_with_the_conversion(tmp_path):
    from chatflow_plugin.hosts.tencentpretrain.progress import check_deepspeed_world

    ckpt = tmp_path / "O"
    (ckpt / "4").mkdir(parents=True)
    (ckpt / "latest").write_text("4")
    write_state(ckpt / "4" / STATE_FILE, step=4, samples_done=16, micro_batch_size=2, world_size=2, dataset="d")
    zero = tmp_path / "zero.json"
    zero.write_text(json.dumps({"zero_optimization": {"stage": 1}}))
    check_deepspeed_world(str(ckpt), str(zero), 2)                            # same ranks: fine
    with pytest.raises(ChatflowError, match=r"saved by 2 data-parallel ranks and this run has 1.*ds_to_universal "
                                            r"--input_folder .*O/4 --output_folder .*O/4_universal.*load_universal"):
        check_deepspeed_world(str(ckpt), str(zero), 1)
    plain = tmp_path / "plain.json"
    plain.write_text(json.dumps({"zero_optimization": {"stage": 0}}))
    check_deepspeed_world(str(ckpt), str(plain), 1)                           # nothing partitioned
    universal = tmp_path / "universal.json"
    universal.write_text(json.dumps({"zero_optimization": {"stage": 1}, "checkpoint": {"load_universal": True}}))
    check_deepspeed_world(str(ckpt), str(universal), 1)
    # the converted folder has no run state of its own: the state of the checkpoint it was converted from
    (ckpt / "4_universal").mkdir()
    (ckpt / "latest_universal").write_text("4_universal")
    pos = resume_position(4, resume_from_checkpoint=str(ckpt), universal=True)
    assert (pos.steps_done, pos.samples_done) == (4, 16) and pos.state["world_size"] == 2
    check_deepspeed_world(str(ckpt), str(universal), 1)                       # the launcher's preflight keeps a copy
    assert read_state(ckpt / "4_universal" / STATE_FILE)["samples_done"] == 16
    # once the resumed run has saved a newer step, the conversion is stale: drop load_universal
    (ckpt / "8").mkdir()
    write_state(ckpt / "8" / STATE_FILE, step=8, samples_done=32, micro_batch_size=4, world_size=1, dataset="d")
    (ckpt / "latest").write_text("8")
    with pytest.raises(ChatflowError, match=r"'latest_universal' names a conversion of step 4 but 'latest' is at step 8"):
        check_deepspeed_world(str(ckpt), str(universal), 1)


def test_llama2_optimizer_sets_epsilon_a_warmup_in_steps_and_warns_when_it_outlasts_the_run(tmp_path, caplog):
    import logging
    from chatflow_plugin.hosts.tencentpretrain.optimizer import _wrap, gradient_clipping
    caplog.set_level(logging.INFO, logger="test")
    args = _optimizer_args(tmp_path, warmup_steps=30, adam_epsilon=1e-5, adam_bias_correction=True)
    optimizer, scheduler, _ = _wrap(_host_init_optimizer([]))(args, torch.nn.Linear(2, 2))
    assert [g["eps"] for g in optimizer.param_groups] == [1e-5, 1e-5]
    lrs = []
    for _ in range(40):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert lrs[15] == pytest.approx(5e-4) and lrs[30] == pytest.approx(1e-3) and lrs[31] < 1e-3
    assert "eps 1e-05" in caplog.text and "peak 0.001 after 30 warm-up steps" in caplog.text
    assert "warning" not in caplog.text
    # a fraction of the run; the host's own schedulers get it as their --warmup fraction
    seen = []

    def host(args, model):
        seen.append((args.scheduler, args.warmup))
        return _host_init_optimizer([])(args, model)
    _wrap(host)(_optimizer_args(tmp_path, warmup_steps=0.1, scheduler="linear", warmup=0.5), torch.nn.Linear(2, 2))
    assert seen == [("linear", pytest.approx(0.1))]
    # a warm-up longer than the run (200 optimizer steps) is said, not silent
    caplog.clear()
    _wrap(_host_init_optimizer([]))(_optimizer_args(tmp_path, warmup_steps=2000), torch.nn.Linear(2, 2))
    assert "warning: the warm-up (2,000 optimizer steps) is not shorter than the run (200 steps)" in caplog.text
    # clipping: DeepSpeed's config clips; a different --max_grad_norm given on the command line is an error
    assert gradient_clipping(_optimizer_args(tmp_path, max_grad_norm=1.0)) == (0.0, f"gradient_clipping of {tmp_path / 'ds.json'}")
    assert gradient_clipping(_optimizer_args(tmp_path, deepspeed=False, max_grad_norm=1.0)) == (1.0, "--max_grad_norm")
    with pytest.raises(ChatflowError, match="under DeepSpeed the config clips"):
        gradient_clipping(_optimizer_args(tmp_path, max_grad_norm=1.0, **{GIVEN: {"max_grad_norm"}}))
