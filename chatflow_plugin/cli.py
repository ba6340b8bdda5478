"""``chatflow`` console script: one subcommand per job, each a thin layer over a library module.

Subcommands are imported lazily so that ``chatflow mixture`` never pays for torch/transformers.
Each target module exposes ``cli_main(argv: list[str], prog: str) -> int | None``.
"""
from __future__ import annotations

import importlib
import sys

from .errors import ChatflowError

SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "preprocess": ("chatflow_plugin.data.preprocess", "tokenize and pack a mixture's sources into token shards"),
    "mixture": ("chatflow_plugin.data.report", "print, check and plot a mixture's dynamic schedule"),
    "expand-vocab": ("chatflow_plugin.checkpoints.vocab", "append pieces to a sentencepiece model and expand weights"),
    "convert": ("chatflow_plugin.checkpoints.convert", "convert LLaMA checkpoints TencentPretrain <-> HuggingFace"),
    "train": ("chatflow_plugin.hosts.hf.train", "train a HuggingFace LLaMA on a shard directory"),
    "demo": ("chatflow_plugin.demo.pipeline", "end-to-end miniature ChatFlow run on a CPU"),
    "baselines": ("chatflow_plugin.data.baselines", "static / two-stage ablation mixtures matched to a dynamic run"),
    "miniature": ("chatflow_plugin.demo.report", "ablation report and Figure 1/2 plots"),
    "eval": ("chatflow_plugin.evaluation.cli", "k-shot MMLU / C-Eval / CMMLU / GAOKAO evaluation"),
    "eval-curve": ("chatflow_plugin.evaluation.over_training", "accuracy over training tokens (Figure 2)"),
    "elo": ("chatflow_plugin.evaluation.elo", "Elo and Bradley-Terry ratings from pairwise votes"),
    "arena": ("chatflow_plugin.evaluation.arena.serve", "local blind pairwise-chat arena whose votes feed elo"),
    "clo-data": ("chatflow_plugin.clo.triples", "build Cross-Lingual Optimization preference triples"),
    "clo-train": ("chatflow_plugin.clo.train", "train with the CLO objective (or its SFT baseline) on triples"),
}


def _usage() -> str:
    lines = ["usage: chatflow <command> [options]", "", "commands:"]
    lines += [f"  {name:<13} {help_}" for name, (_, help_) in SUBCOMMANDS.items()]
    lines += ["", "`chatflow <command> --help` lists a command's options; `chatflow --version` prints the version."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0
    if argv[0] in ("-V", "--version"):
        from . import __version__

        print(f"chatflow-plugin {__version__}")
        return 0
    name, rest = argv[0], argv[1:]
    if name not in SUBCOMMANDS:
        print(f"chatflow: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module_name, _ = SUBCOMMANDS[name]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        print(f"chatflow {name}: needs the missing module {exc.name!r}; "
              f"install the matching extra (pip install 'chatflow-plugin[hf]')", file=sys.stderr)
        return 2
    try:
        code = module.cli_main(rest, prog=f"chatflow {name}")
    except ChatflowError as exc:
        print(f"chatflow {name}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"chatflow {name}: interrupted", file=sys.stderr)
        return 130
    return int(code or 0)


if __name__ == "__main__":
    sys.exit(main())
