import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from chatflow_plugin import cli
from chatflow_plugin.options import option, parse_options

ROOT = Path(__file__).resolve().parents[1]
TABLE1 = ROOT / "models/mixtures/chatflow_table1.json"


@dataclass
class Opts:
    name: str = option(help="a name")
    at: list = option(default_factory=list, repeatable=True, type=float, help="times")
    flag: bool = option(False, help="a flag")
    count: int = option(3, help="a count")


def test_options_use_snake_case_flags_and_repeatable_lists():
    opts = parse_options(Opts, ["--name", "x", "--at", "1", "2", "--at", "3", "--flag"])
    assert opts == Opts(name="x", at=[1.0, 2.0, 3.0], flag=True, count=3)
    assert parse_options(Opts, ["--name", "y"]).at == []
    with pytest.raises(SystemExit):
        parse_options(Opts, ["--count", "3"])      # --name is required


def test_mixture_json_output(capsys):
    assert cli.main(["mixture", str(TABLE1), "--at", "0", "--at", "2500000", "--realized", "100000", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["at"]["0"]["en_corpus"] == pytest.approx(0.60)
    assert report["at"]["2500000"]["zh_inst"] == pytest.approx(0.10)
    realized = report["realized"]
    assert sum(v["count"] for v in realized.values()) == 100_000
    for group, v in realized.items():
        assert abs(v["count"] - v["expected"]) <= 2, group


def test_mixture_table_and_plot(tmp_path, capsys):
    png = tmp_path / "schedule.png"
    assert cli.main(["mixture", str(TABLE1), "--realized", "1000", "--plot", str(png)]) == 0
    out = capsys.readouterr().out
    assert "sampling probability" in out and "realised vs expected" in out
    assert png.stat().st_size > 1000 and png.read_bytes()[:4] == b"\x89PNG"


def test_cli_reports_errors_without_traceback(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text('{"T_grow": -1, "groups": []}')
    assert cli.main(["mixture", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "T_grow" in err and "Traceback" not in err
    assert cli.main(["no-such-command"]) == 2
    capsys.readouterr()
    assert cli.main([]) == 2 and "commands:" in capsys.readouterr().err   # a command is required
    assert cli.main(["--help"]) == 0 and "commands:" in capsys.readouterr().out


def test_mixture_reports_sources_and_epochs_of_a_dataset(tmp_path, spm_model, capsys):
    from test_preprocess import make_mixture

    from chatflow_plugin.data.mixture import load_mixture
    from chatflow_plugin.data.preprocess import preprocess

    mixture = make_mixture(tmp_path / "data")
    preprocess(load_mixture(mixture), spm_model, tmp_path / "shards", workers=1)
    assert cli.main(["mixture", str(mixture), "--realized", "500", "--dataset_dir", str(tmp_path / "shards"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    sources = report["sources"]
    assert sum(v["samples"] for v in sources.values()) == 500
    for v in sources.values():
        assert v["epochs"] == pytest.approx(v["samples"] / v["windows"])


def test_help_shows_real_defaults(capsys):
    with pytest.raises(SystemExit):
        parse_options(Opts, ["--help"])
    out = capsys.readouterr().out
    assert "MISSING" not in out and "(default: 3)" in out


def test_t_grow_prints_as_the_whole_number_it_is(capsys):
    assert cli.main(["mixture", str(TABLE1), "--at", "0"]) == 0
    assert "T_grow = 5000000;" in capsys.readouterr().out


def test_a_closed_stdout_ends_a_command_quietly():
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-m", "chatflow_plugin.cli", "mixture", "table1", "--at", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()                      # `chatflow mixture ... | head` after head has exited
    err = proc.stderr.read().decode()
    assert proc.wait() == 141 and "Traceback" not in err and "BrokenPipe" not in err, err
