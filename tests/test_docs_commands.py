"""Every `chatflow ...` and `scripts/...` command shown in README.md and docs/*.md parses as shown: a command's
own argparse (its options dataclass) or a script's flag parser (`--check_args`, a dry parse); the cheap ones run."""
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from chatflow_plugin import cli
from chatflow_plugin.options import build_parser

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
START = re.compile(r"^(?:#\s*(?:or:|=)?\s*)?(?:\$ )?(?:[A-Z_]+=\S+ )*(?:(?:nice -n \d+ |torchrun [^-]*?-m chatflow_plugin\.cli )?)"
                   r"(chatflow [a-z-]+|scripts/[a-z0-9_]+\.sh)\b(.*)$")


def shown_commands():
    """(file:line, program, arguments) of each command line in a fenced code block; continuation lines joined,
    comments dropped; lines with an elision (`...`) are a sketch, not a command, and are left out."""
    found = []
    for doc in DOCS:
        text = doc.read_text(encoding="utf-8")
        arrays = {name: body.replace("\n", " ") for name, body in re.findall(r"(?ms)^([A-Z_]+)=\((.*?)\)$", text)}
        lines, block = text.splitlines(), False
        i = 0
        while i < len(lines):
            line = lines[i]
            if line.lstrip().startswith("```"):
                block = not block
                i += 1
                continue
            where = f"{doc.relative_to(ROOT)}:{i + 1}"
            text = line.strip()
            while block and text.endswith("\\") and i + 1 < len(lines):
                i += 1
                following = lines[i].strip()
                text = text[:-1] + " " + (following.lstrip("#").strip() if text.startswith("#") else following)
            i += 1
            if not block:
                continue
            shown = re.sub(r"^#\s*(?:or:|=)?\s*", "", text)   # a command shown in a comment ("# or: ...")
            text = re.sub(r"\s+#.*$", "", shown)           # a comment after the command
            text = re.sub(r'"\$\{([A-Z_]+)\[@\]\}"', lambda m: arrays.get(m.group(1), m.group(0)), text)
            text = re.sub(r"\s\[[^\]]*\]", "", text)      # a synopsis's optional parts
            match = START.match(text)
            if match is None or "..." in text or "<" in text and ">" in text and "|" not in text.split("<")[0][-3:]:
                continue
            command = match.group(1)
            rest = re.split(r"\s(?:\||&&|;|>|2>)\s", match.group(2))[0]
            found.append((where, command, shlex.split(rest)))
    return found


COMMANDS = shown_commands()


def test_the_docs_show_commands():
    assert len(COMMANDS) > 40, COMMANDS
    shown = {c for _, c, _ in COMMANDS}
    assert {"chatflow train", "chatflow eval", "scripts/table3_elo.sh", "scripts/table2_benchmarks.sh"} <= shown


@pytest.mark.parametrize("where, command, argv", [c for c in COMMANDS if c[1].startswith("chatflow ")],
                         ids=[f"{w} {c}" for w, c, _ in COMMANDS if c.startswith("chatflow ")])
def test_chatflow_commands_in_the_docs_parse(where, command, argv, capsys):
    import importlib
    name = command.split()[1]
    assert name in cli.COMMANDS, f"{where}: no command `chatflow {name}`"
    row = cli.COMMANDS[name]
    parser = build_parser(getattr(importlib.import_module(row.module), row.options), prog=command)
    try:
        parser.parse_args(argv)
    except SystemExit as exc:
        assert exc.code == 0, f"{where}: `{command} {shlex.join(argv)}` does not parse: {capsys.readouterr().err}"
    err = capsys.readouterr().err
    assert "deprecated" not in err, f"{where}: `{command}` shows an old spelling: {err}"


@pytest.mark.parametrize("where, command, argv", [c for c in COMMANDS if c[1].startswith("scripts/")],
                         ids=[f"{w} {c}" for w, c, _ in COMMANDS if c.startswith("scripts/")])
def test_script_commands_in_the_docs_parse(where, command, argv):
    done = subprocess.run(["bash", str(ROOT / command), "--check_args", *argv], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, f"{where}: `{command} {shlex.join(argv)}` does not parse: {done.stderr}"
    assert "deprecated" not in done.stderr, f"{where}: `{command}` shows an old spelling: {done.stderr}"


CHEAP = ("chatflow mixture", "chatflow plan", "chatflow resources")


@pytest.mark.parametrize("where, command, argv", [c for c in COMMANDS if c[1] in CHEAP],
                         ids=[f"{w} {c}" for w, c, _ in COMMANDS if c in CHEAP])
def test_cheap_commands_in_the_docs_run(where, command, argv, tmp_path, monkeypatch, capsys):
    """What reads only packaged files runs as shown, from an empty directory (a command naming a file of the
    reader's own, a dataset or a run, is only parsed above)."""
    if any(not a.startswith("-") and ("/" in a or a.endswith(".json")) for a in argv):
        pytest.skip("names a file of the reader's")
    monkeypatch.chdir(tmp_path)
    code = cli.main([command.split()[1], *argv])
    assert code == 0, f"{where}: `{command} {shlex.join(argv)}` exits {code}: {capsys.readouterr().err}"
