"""``chatflow arena``: a local blind pairwise-chat arena whose votes feed ``chatflow elo`` (Table 3, Figure 3).

    chatflow arena --model_path out/chatflow-7b llama2-chat-7b linly-7b --votes votes.jsonl
    chatflow elo votes.jsonl --prior 1 --output_prefix results/table3

serves the page on http://127.0.0.1:7860 until interrupted (Ctrl-C or SIGTERM). Every vote is one line
of ``--votes`` (appended, durable, safe under concurrent voters; a restart continues the file).
"""
from __future__ import annotations

import os
import signal
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

from ...errors import ChatflowError, Terminated
from ...options import option


@dataclass
class ArenaOptions:
    model_path: list = option(default_factory=list, repeatable=True, type=str, aliases=["--models"],
                              help="HuggingFace causal LM directories, two or more (--model_path A B C)")
    votes: str = option("", help="JSONL file the votes are appended to (created if absent, continued after a "
                                 "restart); `chatflow elo` reads it")
    model_name: list = option(default_factory=list, repeatable=True, type=str,
                              help="name recorded in the votes for each --model_path directory, in order (default: "
                                   "the directory name)")
    host: str = option("127.0.0.1", help="address to listen on; anything but a loopback address lets other "
                                         "machines vote and read every conversation (there is no login)")
    port: int = option(7860, help="TCP port (0: any free port)")
    template: str = option("auto", help="prompt format: chatflow (User:/Bot: + ### Instruction:/### Response:), "
                                        "chat_template (the tokenizer's), or auto (chat_template when the "
                                        "tokenizer has one, else chatflow)")
    max_new_tokens: int = option(512, help="longest answer in tokens")
    temperature: float = option(0.7, help="sampling temperature (0: greedy)")
    top_p: float = option(1.0, help="nucleus sampling threshold")
    repetition_penalty: float = option(1.0, help="repetition penalty (1: none)")
    max_seconds: float = option(120.0, help="longest time one answer may take")
    max_prompt_chars: int = option(4000, help="longest message a person may send")
    max_turns: int = option(8, help="most messages per round (then vote or start a new round)")
    max_queue: int = option(32, help="most requests waiting for one model; more are refused with a message")
    device: str = option("auto", help="cpu, cuda, cuda:N or auto")
    dtype: str = option("auto", help="auto, float32, bfloat16 or float16")
    elo_prior: float = option(1.0, help="leaderboard tab: chatflow elo's --prior (virtual ties per model; keeps "
                                        "ratings finite while some model has never won)")
    elo_bootstrap: int = option(1000, help="leaderboard tab: chatflow elo's --bootstrap")
    seed: int = option(-1, help="pairing random seed (-1: from the system)")


@dataclass
class ArenaServer:
    """A running arena: ``url``, the Gradio ``app``, the :class:`~.rounds.Arena`; ``close()`` stops everything."""
    url: str
    app: object
    arena: object
    workers: list = field(default_factory=list)

    def close(self) -> None:
        try:
            self.app.close()
        finally:
            for worker in self.workers:
                worker.stop(timeout=5)


def check_options(opts: ArenaOptions) -> list[str]:
    """Validate; returns the model names. Bad input raises ChatflowError naming the flag."""
    if len(opts.model_path) < 2:
        raise ChatflowError(f"--model_path needs two or more model directories, got {len(opts.model_path)}")
    if not opts.votes:
        raise ChatflowError("--votes is required (the JSONL file votes are appended to)")
    for path in opts.model_path:
        if not (Path(path) / "config.json").is_file():
            raise ChatflowError(f"--models {path}: not a HuggingFace model directory (no config.json)")
    if opts.model_name and len(opts.model_name) != len(opts.model_path):
        raise ChatflowError(f"{len(opts.model_name)} --model_name for {len(opts.model_path)} --model_path")
    names = opts.model_name or [Path(p).resolve().name for p in opts.model_path]
    if len(set(names)) != len(names) or not all(n.strip() for n in names):
        raise ChatflowError(f"model names {names} are not unique and non-empty; pass --model_name")
    for flag, value in (("max_prompt_chars", opts.max_prompt_chars), ("max_turns", opts.max_turns),
                        ("max_queue", opts.max_queue)):
        if value < 1:
            raise ChatflowError(f"--{flag} must be >= 1, got {value}")
    if not 0 <= opts.port <= 65535:
        raise ChatflowError(f"--port {opts.port}: not a TCP port")
    if opts.elo_prior < 0 or opts.elo_bootstrap < 0:
        raise ChatflowError("--elo_prior and --elo_bootstrap must be >= 0")
    return names


def serve_arena(opts: ArenaOptions, block: bool = True) -> ArenaServer:
    """Start the arena; with ``block`` serve until SIGINT/SIGTERM, then shut down cleanly."""
    names = check_options(opts)
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"   # no telemetry (also passed to Blocks)
    from ..scoring import load_model
    from .app import build_app
    from .chat import TEMPLATES, SamplingSettings
    from .leaderboard import EloSettings, Leaderboard
    from .pairing import BalancedPairing
    from .rounds import Arena, Limits
    from .votes import VoteStore
    from .workers import ModelWorker

    if opts.template not in TEMPLATES:
        raise ChatflowError(f"--template {opts.template!r}: choose one of {', '.join(TEMPLATES)}")
    settings = SamplingSettings(opts.max_new_tokens, opts.temperature, opts.top_p, opts.repetition_penalty,
                                opts.max_seconds)
    store = VoteStore(opts.votes)
    votes, sides = store.pair_counts()
    pairing = BalancedPairing(names, votes, sides, seed=None if opts.seed < 0 else opts.seed)
    load_lock = threading.Lock()
    workers = {}
    for name, path in zip(names, opts.model_path):
        def loader(path=path):
            return load_model(path, opts.device, opts.dtype)
        workers[name] = ModelWorker(name, path, loader, opts.template, load_lock, opts.max_queue).start()
    arena = Arena(workers, store, pairing, settings, Limits(opts.max_prompt_chars, opts.max_turns))
    board = Leaderboard(opts.votes, EloSettings(prior=opts.elo_prior, bootstrap=opts.elo_bootstrap))
    app = build_app(arena, board)
    app.queue(max_size=opts.max_queue * len(names) + 16, default_concurrency_limit=4)
    if opts.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"chatflow arena: warning: listening on {opts.host}: anyone who reaches it can vote and read the "
              "conversations (no login)", file=sys.stderr)
    try:
        _, url, _ = app.launch(
            server_name=opts.host, server_port=opts.port or _free_port(opts.host), share=False, ssr_mode=False,
            prevent_thread_lock=True, quiet=True, show_error=False, footer_links=[], pwa=False, mcp_server=False,
            enable_monitoring=False, max_file_size=0, run_history=False,
            blocked_paths=[str(Path(p).resolve()) for p in opts.model_path] + [str(Path(opts.votes).resolve())],
            theme=_theme(), css=_css(), app_kwargs={"docs_url": None, "redoc_url": None, "openapi_url": None,
                                                    "middleware": [_no_file_routes()]})
    except OSError as exc:
        for worker in workers.values():
            worker.stop(timeout=5)
        raise ChatflowError(f"cannot listen on {opts.host}:{opts.port}: {exc}") from None
    server = ArenaServer(url, app, arena, list(workers.values()))
    serving = f"chatflow arena: serving {url} ({len(names)} models; votes -> {opts.votes}, {store.count()} so far)"
    if block:
        _serve_until_signal(server, serving)
    else:
        print(serving, file=sys.stderr, flush=True)
    return server


def _free_port(host: str) -> int:
    import socket

    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


# Gradio routes that read, write, proxy or stream files: the arena uses none of them
FILE_ROUTES = ("/file=", "/file/", "/proxy=", "/upload", "/process_recording", "/stream/", "/run-history", "/runs",
               "/dev/reload", "/custom_component/")


def _no_file_routes():
    """ASGI middleware answering 403 to :data:`FILE_ROUTES` (with or without the ``/gradio_api`` prefix)."""
    from starlette.middleware import Middleware
    from starlette.responses import PlainTextResponse

    class NoFileRoutes:
        def __init__(self, app):
            self.app = app

        async def __call__(self, scope, receive, send):
            if scope["type"] == "http":
                path = scope.get("path", "")
                path = path[len("/gradio_api"):] if path.startswith("/gradio_api/") else path
                if path.startswith(FILE_ROUTES):
                    await PlainTextResponse("not available in the arena", status_code=403)(scope, receive, send)
                    return
            await self.app(scope, receive, send)

    return Middleware(NoFileRoutes)


def _theme():
    import gradio as gr

    return gr.themes.Default()   # its fonts ship with gradio (no Google Fonts request)


def _css() -> str:
    from .app import CSS

    return CSS


def _serve_until_signal(server: ArenaServer, serving: str) -> None:
    """Say ``serving`` once the signals are handled here, serve until SIGINT or SIGTERM, shut down, then end as
    every command does on that signal (130 / 143 and one line: :func:`chatflow_plugin.errors.exit_code`)."""
    stop = threading.Event()
    received: list[int] = []

    def handler(signum, frame):
        received.append(signum)
        stop.set()
    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    print(serving, file=sys.stderr, flush=True)
    try:
        while not stop.wait(1.0):
            pass
    finally:
        for s, old in previous.items():
            signal.signal(s, old)
        print("chatflow arena: shutting down", file=sys.stderr, flush=True)
        server.close()
    raise Terminated() if received[0] == signal.SIGTERM else KeyboardInterrupt()


def arena(opts: ArenaOptions) -> None:
    """Serve a local blind arena: people chat with two anonymous models side by side and vote; every vote is one
    line of --votes, the file `chatflow elo` reads (Table 3, Figure 3). Runs until Ctrl-C or SIGTERM."""
    try:
        import gradio  # noqa: F401
    except ModuleNotFoundError:
        raise ChatflowError("the arena needs Gradio: pip install 'chatflow-plugin[arena]'") from None
    serve_arena(opts, block=True)
