"""Run the host's own ``preprocess.py`` / ``pretrain.py`` with the plugin's names and options accepted.

The host builds its argparse parser inside ``main()`` with fixed ``choices=`` for
``--data_processor`` and ``--target``, and ``load_hyperparam`` finds command-line overrides by
scanning ``sys.argv`` for exact ``--name`` tokens. So the launcher, without touching the host's
files: registers the plugin; rewrites ``--name=value`` as ``--name value``; and, for the duration of
the host's ``main()``, extends the one parser that has a ``--data_processor`` option (plugin choices
and options, no abbreviated option names) just before it parses.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import sys
from pathlib import Path
from typing import Iterator, Mapping, Sequence

from ...errors import ChatflowError
from .host import locate_host, register
from .names import DATA_PROCESSOR, TARGET

SCRIPTS = ("preprocess", "pretrain")
GIVEN = "chatflow_given_options"      # namespace attribute: option names given on the command line
STOCK_TARGET = "lm"


def normalize_argv(argv: Sequence[str]) -> list[str]:
    """``--name=value`` -> ``--name value`` (the host's load_hyperparam only understands the latter)."""
    out: list[str] = []
    for i, token in enumerate(argv):
        if token == "--":
            return out + list(argv[i:])
        if token.startswith("--") and "=" in token:
            name, value = token.split("=", 1)
            out += [name, value]
        else:
            out.append(token)
    return out


def given_options(argv: Sequence[str]) -> set[str]:
    return {token[2:] for token in argv if token.startswith("--") and len(token) > 2 and "=" not in token}


def runtime_defaults(argv: Sequence[str], env: Mapping[str, str], cuda_available: bool) -> list[str]:
    """Fill in what the host cannot know under ``torchrun`` (only options the user left out).

    * ``--world_size`` from ``WORLD_SIZE``: with the host's default of 1 it neither reports nor
      splits the data as a distributed run;
    * ``--backend gloo`` for ``--deepspeed`` on a machine without CUDA (the host defaults to nccl);
    * ``--local_rank`` from ``LOCAL_RANK`` on GPUs, so batches go to this process's device.
    """
    argv = list(argv)
    given = given_options(argv)
    if "world_size" not in given and env.get("WORLD_SIZE") and int(env["WORLD_SIZE"]) > 1:
        argv += ["--world_size", env["WORLD_SIZE"]]
    if "deepspeed" in given and "backend" not in given and not cuda_available:
        argv += ["--backend", "gloo"]
    if "local_rank" not in given and env.get("LOCAL_RANK") is not None and cuda_available:
        argv += ["--local_rank", env["LOCAL_RANK"]]
    return argv


def add_plugin_options(parser: argparse.ArgumentParser, script: str) -> None:
    group = parser.add_argument_group("chatflow-plugin (with --data_processor dynamic_mixture)")
    if script == "preprocess":
        group.add_argument("--mixture_config", type=str, default=None,
                           help="Mixture file (JSON): groups, alpha/beta, sources, T_grow; e.g. "
                                "models/mixtures/chatflow_table1.json. --seq_length, if given, overrides its seq_length.")
        group.add_argument("--data_root", type=str, default=None,
                           help="Folder relative source paths resolve against (default: the mixture's data_root).")
        group.add_argument("--source_path", type=str, nargs="+", action="extend", default=None,
                           help="Override a source's files: NAME=PATH[,PATH...] (repeatable).")
        group.add_argument("--on_bad_record", choices=["skip", "fail"], default="skip",
                           help="Skip (and count) malformed records such as blank JSONL lines, or stop at the first.")
        group.add_argument("--overwrite_dataset", action="store_true",
                           help="Replace --dataset_path if it exists (only once the new one is complete).")
    else:
        group.add_argument("--mixture_config", type=str, default=None,
                           help="Mixture file replacing the one recorded in the dataset (any of its sources, any "
                                "grouping and schedule shape), or a history file to re-run as a fixed schedule. "
                                "Default: the dataset's own.")
        group.add_argument("--allow_change", type=str, nargs="+", action="extend", default=None,
                           choices=["mixture", "global_batch"],
                           help="Settings a resumed run may change, recorded in its history: mixture (a new "
                                "--mixture_config from the checkpoint's sample on), global_batch (batch_size x "
                                "data-parallel ranks x accumulation_steps; the run continues at its exact sample).")
        group.add_argument("--mixture_catch_up", type=float, default=0.0,
                           help="With a mixture change: samples over which each group's count is brought to what "
                                "the new schedule, taken from sample 0, would have given it (0: none).")
        group.add_argument("--heldout_dataset_path", type=str, default=None,
                           help="Shard directory of held-out documents (same tokenizer): per-group held-out loss "
                                "at the start, every --heldout_steps and at the end; an adaptive mixture needs it.")
        group.add_argument("--heldout_windows", type=int, default=64, help="Held-out windows per group.")
        group.add_argument("--heldout_steps", type=int, default=0,
                           help="Steps between held-out evaluations (0: start and end, and the adaptive updates).")
        group.add_argument("--response_only_loss", action="store_true",
                           help="No loss on instruction prompts (the paper trains on every token: off).")
        group.add_argument("--start_step", type=int, default=None,
                           help="Steps already done, for a restart from O-<step> without DeepSpeed; "
                                "with --resume_from_checkpoint the checkpoint's step is used.")
        group.add_argument("--sample_log", type=str, default=None,
                           help="Write, per step, the global sample indices this rank trained on (JSON lines; "
                                "PATH.rank<r> per rank when distributed).")


def extend_host_parser(parser: argparse.ArgumentParser, script: str, argv: Sequence[str]) -> None:
    """Accept the plugin's names and options in the host's parser (idempotent)."""
    if getattr(parser, "_chatflow_extended", False):
        return
    parser._chatflow_extended = True
    parser.allow_abbrev = False            # load_hyperparam looks options up by their exact name
    for action in parser._actions:
        if action.dest == "data_processor" and action.choices is not None and DATA_PROCESSOR not in action.choices:
            action.choices = list(action.choices) + [DATA_PROCESSOR]
        if action.dest == "target" and action.choices is not None and TARGET not in action.choices:
            action.choices = list(action.choices) + [TARGET]
        if action.dest == "corpus_path" and _data_processor(argv) == DATA_PROCESSOR:
            action.required = False        # the mixture file names the corpora
    add_plugin_options(parser, script)


def translate_target(namespace: argparse.Namespace) -> None:
    """``--target chatflow_instruction`` -> build the stock ``lm`` target, flag the namespace.

    The host names the target module after the registry key, and checkpoint keys after the module;
    building the stock target keeps ``target.lm.output_layer.weight`` (which every host loader and
    converter expects, ZeRO-3 included) and the plugin's trainer adopts that module.
    """
    targets = getattr(namespace, "target", None)
    if isinstance(targets, list) and TARGET in targets:
        if STOCK_TARGET in targets:
            raise ChatflowError(f"--target {TARGET} already is the {STOCK_TARGET} loss; give one of them")
        namespace.target = [STOCK_TARGET if t == TARGET else t for t in targets]
        namespace.chatflow_instruction = True


def _data_processor(argv: Sequence[str]) -> str | None:
    value = None
    for i, token in enumerate(argv[:-1]):
        if token == "--data_processor":
            value = argv[i + 1]
    return value


@contextlib.contextmanager
def host_parser_extended(script: str, argv: Sequence[str]) -> Iterator[None]:
    """While active, the parser that has ``--data_processor`` is extended right before it parses."""
    original = argparse.ArgumentParser.parse_args
    given = given_options(argv)

    def parse_args(self, args=None, namespace=None):
        if any(a.dest == "data_processor" for a in self._actions):
            extend_host_parser(self, script, argv)
            parsed = original(self, args, namespace)
            setattr(parsed, GIVEN, set(given))
            translate_target(parsed)
            return parsed
        return original(self, args, namespace)

    argparse.ArgumentParser.parse_args = parse_args
    try:
        yield
    finally:
        argparse.ArgumentParser.parse_args = original


def _option(argv: Sequence[str], name: str) -> str | None:
    value = None
    for i, token in enumerate(argv[:-1]):
        if token == f"--{name}":
            value = argv[i + 1]
    return value


def target_from_config(argv: Sequence[str]) -> list[str]:
    """A ``"target": ["chatflow_instruction"]`` in --config_path is moved onto the command line.

    load_hyperparam applies config values after parsing, past the launcher's translation to the
    stock module name (which keeps checkpoint keys stock); on the command line it goes through it.
    """
    argv = list(argv)
    config = _option(argv, "config_path")
    if "target" in given_options(argv) or not config or not os.path.isfile(config):
        return argv
    import json

    try:
        targets = json.loads(Path(config).read_text(encoding="utf-8")).get("target")
    except (OSError, ValueError) as exc:
        raise ChatflowError(f"--config_path {config}: unreadable ({exc})") from None
    if isinstance(targets, list) and TARGET in targets:
        argv += ["--target", *targets]
    return argv


def preflight_pretrain(argv: Sequence[str]) -> None:
    """Check dataset, tokenizer and config before the host spends minutes building a large model."""
    if _data_processor(argv) != DATA_PROCESSOR:
        return
    import json

    from ...data.shards import ShardSet
    from ...tokenizer import load_sentencepiece

    spm_path, dataset, config = (_option(argv, n) for n in ("spm_model_path", "dataset_path", "config_path"))
    if not spm_path:
        raise ChatflowError(f"--data_processor {DATA_PROCESSOR} needs --spm_model_path")
    if not os.path.isfile(spm_path):
        raise ChatflowError(f"--spm_model_path {spm_path}: no such file")
    ShardSet(dataset or "dataset.pt", spm_model_path=spm_path)
    if config and os.path.isfile(config):
        try:
            configured = json.loads(Path(config).read_text(encoding="utf-8")).get("vocab_size")
        except (OSError, ValueError) as exc:
            raise ChatflowError(f"--config_path {config}: unreadable ({exc})") from None
        pieces = load_sentencepiece(spm_path).get_piece_size()
        if configured is not None and int(configured) != pieces:
            raise ChatflowError(f"{config} is for a {configured}-piece vocabulary but {spm_path} has {pieces} "
                                f"pieces (expand the tokenizer first: chatflow expand-vocab)")
    resume = _option(argv, "resume_from_checkpoint")
    if "deepspeed" in given_options(argv) and resume:
        from .progress import check_deepspeed_world

        model_parallel = 1
        for name in ("tensor_model_parallel_size", "pipeline_model_parallel_size"):
            model_parallel *= int(_option(argv, name) or 1)
        world = int(_option(argv, "world_size") or os.environ.get("WORLD_SIZE") or 1) // model_parallel
        check_deepspeed_world(resume, _option(argv, "deepspeed_config"), max(world, 1))


def preflight_preprocess(argv: Sequence[str]) -> None:
    """The files the plugin's preprocessing needs, checked before the host loads its tokenizer."""
    if _data_processor(argv) != DATA_PROCESSOR:
        return
    for name in ("mixture_config", "spm_model_path"):
        value = _option(argv, name)
        if not value:
            raise ChatflowError(f"--data_processor {DATA_PROCESSOR} needs --{name}")
        if not os.path.isfile(value):
            raise ChatflowError(f"--{name} {value}: no such file")


def _load_host_script(home: Path, script: str):
    path = home / f"{script}.py"
    if not path.is_file():
        raise ChatflowError(f"{path} not found: TENCENTPRETRAIN_HOME must be a full TencentPretrain work tree "
                            f"(with its {script}.py)")
    spec = importlib.util.spec_from_file_location(f"_tencentpretrain_{script}_script", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module, path


def run_host_script(script: str, argv: Sequence[str] | None = None) -> int:
    """Run the host's ``<script>.py`` main() with the plugin registered; returns an exit code."""
    if script not in SCRIPTS:
        raise ValueError(f"script must be one of {SCRIPTS}")
    argv = normalize_argv(sys.argv[1:] if argv is None else argv)
    prog = f"{script}.py"
    try:
        if script == "pretrain":
            import torch
            argv = runtime_defaults(argv, os.environ, torch.cuda.is_available())
            argv = target_from_config(argv)
            preflight_pretrain(argv)
        if script == "preprocess":
            preflight_preprocess(argv)
        home = locate_host()
        register()
        module, path = _load_host_script(home, script)
        saved_argv = sys.argv
        sys.argv = [str(path)] + argv        # the host's load_hyperparam reads sys.argv
        try:
            with host_parser_extended(script, argv):
                module.main()
        finally:
            sys.argv = saved_argv
    except ChatflowError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    return 0
