"""One vocabulary of flags (docs/flags.md): every `chatflow` command's options and every script's flags name an idea
with its one flag; older spellings are hidden aliases only; prefixes never bind."""
import argparse
import importlib
import re
import subprocess
from pathlib import Path

import pytest

from chatflow_plugin import cli
from chatflow_plugin.options import build_parser

ROOT = Path(__file__).resolve().parents[1]

# idea -> (its flag, other spellings it must never have beyond a hidden alias)
SYNONYMS = {
    "model to read": ("--model_path", {"--model", "--models", "--checkpoint", "--pretrained", "--llama2",
                                       "--pretrained_model", "--model_dir", "--base_model"}),
    "model to write": ("--output_model_path", {"--output_checkpoint", "--output_model"}),
    "output folder": ("--output_dir", {"--out", "--outdir", "--output_folder", "--out_dir"}),
    "output prefix": ("--output_prefix", {"--prefix"}),
    "shard folder": ("--dataset_dir", {"--dataset", "--shards", "--dataset_path"}),
    "held-out folder": ("--heldout_dir", {"--eval_data", "--heldout", "--valid_dir", "--heldout_dataset"}),
    "raw-data folder": ("--data_dir", {"--data_root", "--data", "--corpus_dir", "--data_path"}),
    "run to read": ("--run", {"--history", "--checkpoints", "--run_dir"}),
    "tokenizer": ("--tokenizer", {"--spm_model_path", "--tokenizer_path", "--spm"}),
    "steps": ("--train_steps", {"--steps", "--max_steps", "--total_steps", "--num_steps"}),
    "warm-up": ("--warmup_steps", {"--warmup_ratio", "--warmup"}),
    "learning rate": ("--learning_rate", {"--lr"}),
    "seed": ("--seed", {"--random_seed"}),
}
BANNED = {spelling: idea for idea, (_, spellings) in SYNONYMS.items() for spelling in spellings}
# `--batch_size` is an inference batch in the evaluation commands; the training scripts call theirs
# --micro_batch_size (docs/flags.md), so it is banned there only
TRAINING_SCRIPTS = ("adapt_language", "figure1_loss_curves", "chatflow_full_run", "clo_vs_sft")


def _parser(name):
    row = cli.COMMANDS[name]
    return build_parser(getattr(importlib.import_module(row.module), row.options), prog=f"chatflow {name}")


def _flags(parser):
    """(shown flags, hidden aliases) of a parser."""
    shown, hidden = set(), set()
    for action in parser._actions:
        (hidden if action.help == argparse.SUPPRESS else shown).update(action.option_strings)
    return shown, hidden


@pytest.mark.parametrize("name", sorted(cli.COMMANDS))
def test_every_command_names_each_idea_with_its_one_flag(name):
    shown, hidden = _flags(_parser(name))
    wrong = {flag: BANNED[flag] for flag in shown if flag in BANNED}
    assert not wrong, f"chatflow {name}: {wrong} (docs/flags.md gives each idea's flag; keep the old one as an alias)"
    for alias in hidden:   # an alias stands for a flag of the table, or is a documented spelling
        assert alias.startswith("--"), alias


@pytest.mark.parametrize("name", sorted(cli.COMMANDS))
def test_aliases_are_hidden_work_and_say_the_new_flag_and_prefixes_never_bind(name, capsys):
    parser = _parser(name)
    help_text = parser.format_help()
    for action in parser._actions:
        if action.help != argparse.SUPPRESS or not action.option_strings or action.nargs == 0:
            continue
        alias = action.option_strings[0]
        assert re.search(rf"{re.escape(alias)}\b(?!_)", help_text) is None, f"{alias} shows in --help"
        canonical = next(a for a in parser._actions if a.dest == action.dest and a.help != argparse.SUPPRESS)
        namespace = argparse.Namespace()
        action(parser, namespace, ["x"] if action.nargs in ("+", "*") else "x", alias)
        assert f"{alias} is deprecated, use {canonical.option_strings[0]}" in capsys.readouterr().err
    # a prefix of a flag is refused, never taken for the flag
    longest = max((s for a in parser._actions for s in a.option_strings if s.startswith("--")), key=len)
    assert parser.allow_abbrev is False and parser._parse_optional(longest[:-1])[0] is None, longest


def _script_specs():
    specs = {}
    for script in sorted((ROOT / "scripts").glob("*.sh")):
        if script.name.startswith("_"):
            continue
        match = re.search(r'parse_flags "([^"]*)"', script.read_text(encoding="utf-8"))
        specs[script.stem] = match.group(1).split() if match else []
    return specs


@pytest.mark.parametrize("script, spec", sorted(_script_specs().items()))
def test_every_script_names_each_idea_with_its_one_flag(script, spec):
    flags = {f"--{w.split(':', 1)[1]}" for w in spec if w.startswith(("bool:", "value:"))}
    aliases = {w.split(":", 1)[1].split("=") [0]: w.split("=")[1] for w in spec if w.startswith("alias:")}
    wrong = {f: BANNED[f] for f in flags if f in BANNED}
    if script in TRAINING_SCRIPTS and "--batch_size" in flags:
        wrong["--batch_size"] = "micro batch"
    assert not wrong, f"scripts/{script}.sh: {wrong} (docs/flags.md; keep the old spelling as alias:OLD=NEW)"
    for old, new in aliases.items():
        assert f"--{new}" in flags, f"scripts/{script}.sh: alias {old} of an unknown flag {new}"


def test_script_aliases_say_the_new_flag_and_two_spellings_are_refused():
    script = str(ROOT / "scripts" / "clo_vs_sft.sh")
    done = subprocess.run(["bash", script, "--check_args", "--model", "m", "--eval_data", "e"], capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stderr
    assert "--model is deprecated, use --model_path" in done.stderr
    assert "--eval_data is deprecated, use --heldout_dir" in done.stderr
    done = subprocess.run(["bash", script, "--check_args", "--model", "m", "--model_path", "n"], capture_output=True,
                          text=True)
    assert done.returncode == 2 and "give it once" in done.stderr
    done = subprocess.run(["bash", script, "--check_args", "--model_pat", "m"], capture_output=True, text=True)
    assert done.returncode == 2 and "unknown argument --model_pat" in done.stderr
    done = subprocess.run(["bash", script, "--check_args", "stray"], capture_output=True, text=True)
    assert done.returncode == 2 and "unexpected argument stray" in done.stderr


def test_an_old_spelling_runs_as_the_new_flag(capsys):
    assert cli.main(["plan", "--mixture", "table1", "--global_batch_size", "512", "--steps", "20000", "--json"]) == 0
    captured = capsys.readouterr()
    assert "--steps is deprecated, use --train_steps" in captured.err and '"steps": 20000' in captured.out
    with pytest.raises(SystemExit) as exit:
        cli.main(["plan", "--mixture", "table1", "--global_batch_size", "512", "--train_step", "1000"])
    assert exit.value.code == 2
    assert "unrecognized arguments: --train_step" in capsys.readouterr().err
