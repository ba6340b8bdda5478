"""Run the host's own ``preprocess.py`` / ``pretrain.py`` with the plugin's names and options accepted.

The host builds its argparse parser inside ``main()`` with fixed ``choices=`` for
``--data_processor`` and ``--target``, and ``load_hyperparam`` finds command-line overrides by
scanning ``sys.argv`` for exact ``--name`` tokens. So the launcher, without touching the host's
files: registers the plugin; rewrites ``--name=value`` as ``--name value``; and, for the duration of
the host's ``main()``, extends the one parser that has a ``--data_processor`` option (plugin choices
and options, no abbreviated option names) just before it parses, and (pretraining) builds the optimizer
with LLaMA-2's settings when asked (:mod:`.optimizer`).
"""
from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import sys
from pathlib import Path
from typing import Iterator, Mapping, Sequence

from ...errors import ChatflowError, exit_code
from ...outputs import output_lock
from ...resources import named
from .host import locate_host, register
from .names import DATA_PROCESSOR, GIVEN, TARGET
from .optimizer import SCHEDULER, add_optimizer_options, apply_defaults, llama2_optimizer
from ...data.runstate import CHANGEABLE
from .progress import MEANING_KEYS, resume_tag

SCRIPTS = ("preprocess", "pretrain")
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


# options whose value may be a packaged file's name (chatflow_plugin.resources): --config_path llama2-7b ...
NAMED_OPTIONS = {"mixture_config": "mixture", "config_path": "host_config", "deepspeed_config": "deepspeed_config"}


def resolve_names(argv: Sequence[str]) -> list[str]:
    """Packaged files named without a path (``--mixture_config table1``, ``--config_path llama2-7b``,
    ``--deepspeed_config zero3``) replaced by their paths, which the host then reads as it would any file."""
    out = list(argv)
    for i, token in enumerate(out[:-1]):
        kind = NAMED_OPTIONS.get(token[2:]) if token.startswith("--") else None
        if kind is not None:
            out[i + 1] = str(named(kind, out[i + 1]))
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
        group.add_argument("--split", type=str, default=None,
                           help="Split every source by record before tokenization into a training part and held-out "
                                "parts, one dataset each under --dataset_path: train:0.98,valid:0.01,test:0.01, or "
                                "969,30,1 (train,valid,test). Train on --dataset_path D/train with "
                                "--heldout_dataset_path D/valid.")
        group.add_argument("--split_seed", type=int, default=0, help="Seed of --split.")
    else:
        group.add_argument("--mixture_config", type=str, default=None,
                           help="Mixture file replacing the one recorded in the dataset (any of its sources, any "
                                "grouping and schedule shape), or a history file to re-run as a fixed schedule. "
                                "Default: the dataset's own.")
        group.add_argument("--mixture_catch_up", type=float, default=0.0,
                           help="With a mixture change: samples over which each group's count is brought to what "
                                "the new schedule, taken from sample 0, would have given it (0: none).")
        group.add_argument("--heldout_dataset_path", type=str, default=None,
                           help="Shard directory of held-out documents (same tokenizer): per-group held-out loss "
                                "at the start, every --heldout_steps and at the end; an adaptive mixture needs it.")
        group.add_argument("--heldout_windows", type=int, default=64, help="Held-out windows per group.")
        group.add_argument("--tensorboard_dir", type=str, default=None,
                           help="Write TensorBoard event files here (first rank): the loss, per-group loss, the "
                                "mixture p_k(t), realised shares and epochs, learning rate, samples, tokens at every "
                                "report, held-out losses, and a mark at every mixture revision or allowed change.")
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
        add_optimizer_options(group)
        group.add_argument("--allow_change", type=str, nargs="+", action="extend", default=None,
                           choices=list(MEANING_KEYS) + list(CHANGEABLE),
                           help="When resuming, let these settings change the run from the checkpoint's step on: "
                                f"{', '.join(MEANING_KEYS)} (its meaning); mixture (a new --mixture_config from the "
                                "checkpoint's sample on), global_batch (batch_size x data-parallel ranks x "
                                "accumulation_steps; the run continues at its exact sample). Each change is appended "
                                "to the history every later checkpoint's chatflow_state.json carries; otherwise such "
                                "a resume is refused.")
        group.add_argument("--no_verify_data", action="store_true",
                           help="Load the dataset without checking its files' checksums and token ids (for huge "
                                "datasets already checked; sizes and manifest fields are still checked).")


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
        if action.dest == "scheduler" and action.choices is not None and SCHEDULER not in action.choices:
            action.choices = list(action.choices) + [SCHEDULER]
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
            if script == "pretrain" and _data_processor(argv) == DATA_PROCESSOR:
                apply_defaults(parsed, given)       # LLaMA-2's optimizer settings where none is given
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
    from ...tokenizer import SENTENCEPIECE, load_sentencepiece, load_tokenizer

    spm_path, dataset, config = (_option(argv, n) for n in ("spm_model_path", "dataset_path", "config_path"))
    if not spm_path:
        raise ChatflowError(f"--data_processor {DATA_PROCESSOR} needs --spm_model_path")
    if not os.path.isfile(spm_path):
        raise ChatflowError(f"--spm_model_path {spm_path}: no such file")
    ShardSet(dataset or "dataset.pt", tokenizer=load_tokenizer(spm_path, SENTENCEPIECE),
             verify="no_verify_data" not in given_options(argv))
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


HOST_DEFAULT_CONFIG = "models/bert/base_config.json"   # the host's --config_path default, relative to the cwd
POSITIVE = ("batch_size", "total_steps", "report_steps", "save_checkpoint_steps", "accumulation_steps",
            "processes_num", "seq_length")


def _int_option(argv: Sequence[str], name: str) -> int | None:
    value = _option(argv, name)
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None     # the host's parser reports it


def check_arguments(script: str, argv: Sequence[str]) -> str | None:
    """Arguments the host would take to a traceback, a hang or a silently wrong run, refused up front (for
    every --data_processor). Returns the DeepSpeed tag a resume loads (None: no resume)."""
    for name in POSITIVE:
        value = _int_option(argv, name)
        if value is not None and value < 1:
            raise ChatflowError(f"--{name} must be positive, got {value}")
    if script == "preprocess":
        return None
    given = given_options(argv)
    config = _option(argv, "config_path") or HOST_DEFAULT_CONFIG
    if not os.path.isfile(config):
        raise ChatflowError(f"--config_path {config}: no such file" + (
            " (the host's default, relative to the working directory); give the model's config, e.g. "
            "models/llama2/7b_config.json" if "config_path" not in given else ""))
    deepspeed = "deepspeed" in given
    for name in ("tensor_model_parallel_size", "pipeline_model_parallel_size"):
        value = _int_option(argv, name)
        if value is not None and value > 1 and not deepspeed:
            raise ChatflowError(f"--{name} {value} needs --deepspeed (the host builds model parallelism with it)")
    pipeline = _int_option(argv, "pipeline_model_parallel_size")
    if _data_processor(argv) == DATA_PROCESSOR and pipeline is not None and pipeline > 1:
        raise ChatflowError(f"--data_processor {DATA_PROCESSOR} does not support pipeline parallelism "
                            f"(--pipeline_model_parallel_size {pipeline})")
    dataset = _option(argv, "dataset_path")
    if dataset and _data_processor(argv) != DATA_PROCESSOR and os.path.isfile(os.path.join(dataset, "manifest.json")):
        raise ChatflowError(f"--dataset_path {dataset} is a chatflow dataset: train on it with --data_processor "
                            f"{DATA_PROCESSOR}")
    start_step = _int_option(argv, "start_step")
    if start_step is not None and start_step < 0:
        raise ChatflowError(f"--start_step must be 0 or more, got {start_step}")
    if start_step and not _option(argv, "pretrained_model_path"):
        raise ChatflowError(f"--start_step {start_step} continues a checkpoint: give it as --pretrained_model_path "
                            f"(the O-{start_step} file the run saved)")
    resume = _option(argv, "resume_from_checkpoint")
    if resume is None:
        return None
    if not deepspeed:
        raise ChatflowError(f"--resume_from_checkpoint {resume} needs --deepspeed (without DeepSpeed the host "
                            f"ignores it); to continue a plain checkpoint O-<step>, pass --pretrained_model_path "
                            f"O-<step> --start_step <step>")
    if start_step:
        raise ChatflowError("--start_step and --resume_from_checkpoint both say where to resume: give one")
    if not os.path.isdir(resume):
        raise ChatflowError(f"--resume_from_checkpoint {resume}: no such directory")
    from ..zero import deepspeed_settings

    if deepspeed_settings(_option(argv, "deepspeed_config"))[1]:
        return None       # a universal checkpoint: DeepSpeed follows 'latest_universal' itself
    return resume_tag(resume)


@contextlib.contextmanager
def deepspeed_loads_tag(checkpoint_dir: str | None, tag: str | None) -> Iterator[None]:
    """While active, DeepSpeed's ``load_checkpoint(checkpoint_dir)`` (which the host calls without a tag, so
    that DeepSpeed would follow ``latest``) loads ``tag``: the complete checkpoint :func:`resume_tag` chose."""
    if checkpoint_dir is None or tag is None:
        yield
        return
    from deepspeed.runtime.engine import DeepSpeedEngine

    original = DeepSpeedEngine.load_checkpoint
    folder = os.path.abspath(checkpoint_dir)

    def load_checkpoint(self, load_dir, tag_=None, *args, **kwargs):
        if tag_ is None and kwargs.get("tag") is None and os.path.abspath(load_dir) == folder:
            tag_ = tag
        return original(self, load_dir, tag_, *args, **kwargs)

    DeepSpeedEngine.load_checkpoint = load_checkpoint
    try:
        yield
    finally:
        DeepSpeedEngine.load_checkpoint = original


@contextlib.contextmanager
def output_held(argv: Sequence[str]) -> Iterator[None]:
    """The training output's lock, held by the first process (others do nothing); saves that a kill cut short
    (``O-<step>.partial``) are removed under it."""
    output = _option(argv, "output_model_path")
    if not output or os.environ.get("RANK", "0") != "0":
        yield
        return
    with output_lock(output):
        for leftover in Path(output).parent.glob(f"{Path(output).name}-*.partial"):
            if leftover.is_file():
                leftover.unlink()
        yield


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
    argv = resolve_names(normalize_argv(sys.argv[1:] if argv is None else argv))
    prog = f"{script}.py"

    def run() -> None:
        nonlocal argv
        tag = check_arguments(script, argv)
        if script == "pretrain":
            import torch
            argv = runtime_defaults(argv, os.environ, torch.cuda.is_available())
            argv = target_from_config(argv)
            preflight_pretrain(argv)
            if "deepspeed" in given_options(argv):
                from ..extensions import clear_stale_build_locks

                clear_stale_build_locks()     # DeepSpeed builds its CPU ops under a lock that never times out
        if script == "preprocess":
            preflight_preprocess(argv)
        home = locate_host()
        register()
        module, path = _load_host_script(home, script)
        saved_argv = sys.argv
        sys.argv = [str(path)] + argv        # the host's load_hyperparam reads sys.argv
        try:
            with host_parser_extended(script, argv), \
                    deepspeed_loads_tag(_option(argv, "resume_from_checkpoint"), tag), \
                    (output_held(argv) if script == "pretrain" else contextlib.nullcontext()), \
                    (llama2_optimizer() if script == "pretrain" else contextlib.nullcontext()):
                module.main()
        finally:
            sys.argv = saved_argv

    from ...files import unwritten

    return exit_code(prog, run, translate=unwritten)
