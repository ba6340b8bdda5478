"""``chatflow``: one command per job, each an options dataclass plus the library function that does the job.

Every command is one row of :data:`COMMANDS`: the module (imported only when the command runs, so
``chatflow mixture`` never pays for torch or transformers), its options dataclass (flags are the fields,
``--snake_case`` as TencentPretrain spells its options; see :mod:`chatflow_plugin.options`) and the function
that takes the parsed options. The function's docstring is the command's ``--help`` description. Errors take one
path: a :class:`~chatflow_plugin.errors.ChatflowError` prints ``chatflow <command>: error: <message>`` and exits
2, without a traceback, and so does a full or read-only disk met anywhere (an ``OSError`` of
:data:`chatflow_plugin.files.WRITE_ERRNOS`, named with the file it names). Ctrl-C exits 130 and SIGTERM 143
with one line, after the same clean-up as an error (outputs being written removed, locks released), also while
the command's modules are still being imported: this module imports next to nothing at import time, so that
even the first instants of ``chatflow`` are covered (docs/reliability.md). A command run without ``--deepspeed``
never imports DeepSpeed (:func:`chatflow_plugin.hosts.zero.deepspeed_hidden`).

``torchrun -m chatflow_plugin.cli train ...`` runs a command under a distributed launcher.
"""
from __future__ import annotations

import sys
from typing import NamedTuple

from .errors import exit_code


class Command(NamedTuple):
    module: str
    options: str       # the options dataclass in ``module``
    function: str      # the library function in ``module`` taking those options
    summary: str       # one line for ``chatflow --help``


COMMANDS: dict[str, Command] = {
    "preprocess": Command("chatflow_plugin.data.preprocess", "PreprocessOptions", "run_preprocess",
                          "tokenize and pack a mixture's sources into token shards"),
    "mixture": Command("chatflow_plugin.data.report", "MixtureOptions", "mixture_report",
                       "print, check and plot a mixture's dynamic schedule"),
    "plan": Command("chatflow_plugin.data.plan", "PlanOptions", "run_plan",
                    "plan a run: steps, T_grow step, per-group/source samples and epochs, GPU-hours"),
    "baselines": Command("chatflow_plugin.data.baselines", "BaselineOptions", "run_baselines",
                         "static / two-stage ablation mixtures matched to a dynamic run"),
    "search": Command("chatflow_plugin.search.run", "SearchOptions", "run_search",
                      "choose a mixture's schedule (alpha, beta, T_grow) from small proxy runs"),
    "expand-vocab": Command("chatflow_plugin.checkpoints.vocab", "ExpandVocabOptions", "expand_vocab",
                            "append pieces to a tokenizer (sentencepiece or byte-level BPE) and expand weights"),
    "convert": Command("chatflow_plugin.checkpoints.convert", "ConvertOptions", "convert",
                       "convert LLaMA checkpoints TencentPretrain <-> HuggingFace"),
    "train": Command("chatflow_plugin.hosts.hf.train", "TrainOptions", "run_train",
                     "train a HuggingFace LLaMA-family model on a shard directory"),
    "demo": Command("chatflow_plugin.demo.pipeline", "DemoOptions", "run_demo",
                    "end-to-end miniature ChatFlow run on a CPU"),
    "demo-report": Command("chatflow_plugin.demo.report", "ReportOptions", "rewrite_report",
                           "the demo's held-out report from run folders"),
    "figure1": Command("chatflow_plugin.evaluation.figures", "Figure1Options", "plot_figure1",
                       "training loss over tokens of runs or host logs (Figure 1)"),
    "figure2": Command("chatflow_plugin.evaluation.figures", "Figure2Options", "plot_figure2",
                       "benchmark accuracy over tokens from eval results (Figure 2)"),
    "eval": Command("chatflow_plugin.evaluation.evaluate", "EvalOptions", "evaluate",
                    "MMLU / C-Eval / CMMLU / GAOKAO by each benchmark's own protocol (Table 2)"),
    "eval-curve": Command("chatflow_plugin.evaluation.over_training", "CurveOptions", "eval_curve",
                          "accuracy of a run's checkpoints over training tokens (Figure 2)"),
    "fidelity": Command("chatflow_plugin.evaluation.fidelity", "FidelityOptions", "fidelity",
                        "share of answers written in the prompt's language"),
    "elo": Command("chatflow_plugin.evaluation.elo", "EloOptions", "elo",
                   "Elo and Bradley-Terry ratings from pairwise votes (Table 3, Figure 3)"),
    "arena": Command("chatflow_plugin.evaluation.arena.serve", "ArenaOptions", "arena",
                     "local blind pairwise-chat arena whose votes feed elo"),
    "arena-smoke": Command("chatflow_plugin.evaluation.arena.client", "ClientOptions", "arena_smoke",
                           "vote scripted rounds through a running arena (a smoke test, not an evaluation)"),
    "clo-data": Command("chatflow_plugin.clo.triples", "CLODataOptions", "clo_data",
                        "build Cross-Lingual Optimization preference triples"),
    "clo-train": Command("chatflow_plugin.clo.train", "CLOTrainOptions", "run_clo_train",
                         "train with the CLO objective (or its SFT baseline) on triples"),
    "resources": Command("chatflow_plugin.resources", "ResourcesOptions", "list_resources",
                         "list the packaged mixtures, model configs and files commands take by name"),
}


def _usage() -> str:
    lines = ["usage: chatflow <command> [options]", "", "commands:"]
    lines += [f"  {name:<13} {command.summary}" for name, command in COMMANDS.items()]
    lines += ["", "`chatflow <command> --help` lists a command's options; `chatflow --version` prints the version."]
    return "\n".join(lines)


def _run(name: str, command: Command, argv: list[str]) -> int:
    import importlib
    import inspect

    from .options import parse_options

    try:
        module = importlib.import_module(command.module)
    except ModuleNotFoundError as exc:
        print(f"chatflow {name}: needs the missing module {exc.name!r}; "
              f"install the matching extra (pip install 'chatflow-plugin[hf]')", file=sys.stderr)
        return 2
    prog = f"chatflow {name}"
    function = getattr(module, command.function)
    options = parse_options(getattr(module, command.options), argv, prog=prog,
                            description=inspect.getdoc(function))
    from .hosts.zero import deepspeed_hidden

    with deepspeed_hidden(getattr(options, "deepspeed", None)):   # imported only by a run that uses it
        code = function(options)
    return code if isinstance(code, int) else 0   # library functions return their results


def _stdout_closed() -> int:
    """A reader that closed our stdout early (``chatflow plan ... | head``) ends the command quietly, as SIGPIPE
    ends a Unix tool: no traceback, exit 141, and nothing more written (Python would fail flushing at exit)."""
    import os

    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError):      # stdout is not a real file (a test's capture)
        pass
    return 141


def main(argv: list[str] | None = None) -> int:
    try:
        code = _main(list(sys.argv[1:] if argv is None else argv))
        sys.stdout.flush()     # here, not at exit, so that a closed pipe is met inside the try
        return code
    except BrokenPipeError:
        return _stdout_closed()
    finally:
        if argv is None:       # the process's own command line: it ends now
            _ignore_signals_in_teardown()


def _ignore_signals_in_teardown() -> None:
    """The command has ended (its outputs whole, or undone, and its exit code chosen): a Ctrl-C or SIGTERM that
    lands while the interpreter tears down (atexit callbacks, torch's finalizers) would only print an "Exception
    ignored" traceback, so the teardown ignores them."""
    import signal

    for signum in (signal.SIGINT, signal.SIGTERM):
        try:
            signal.signal(signum, signal.SIG_IGN)
        except (ValueError, OSError):       # not the main thread
            pass


def _main(argv: list[str]) -> int:
    if not argv:
        print(_usage(), file=sys.stderr)   # a command is required: the usage, as argparse does, exit 2
        return 2
    if argv[0] in ("-h", "--help"):
        print(_usage())
        return 0
    if argv[0] in ("-V", "--version"):
        from . import __version__

        print(f"chatflow-plugin {__version__}")
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"chatflow: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    from .files import unwritten

    return exit_code(f"chatflow {name}", lambda: _run(name, COMMANDS[name], rest), translate=unwritten)


if __name__ == "__main__":
    sys.exit(main())
