"""What the code reads at run time ships with the package, from the one copy in models/ and corpora/; paths
written into generated files follow one rule; `chatflow --version`."""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from chatflow_plugin import __version__
from chatflow_plugin.errors import ChatflowError
from chatflow_plugin.files import path_for_file, resolve_from_file
from chatflow_plugin.resources import resource

ROOT = Path(__file__).resolve().parents[1]


def test_resources_found_in_a_checkout():
    assert resource("models/mixtures/tiny_corpora.json") == ROOT / "models/mixtures/tiny_corpora.json"
    assert (resource("corpora") / "en_corpus").is_dir()
    with pytest.raises(ChatflowError, match="no/such.json"):
        resource("models/no/such.json")


@pytest.mark.slow
def test_wheel_bundles_models_and_corpora_unchanged(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(tmp_path), str(ROOT)], check=True, capture_output=True, timeout=600)
    wheel = next(tmp_path.glob("chatflow_plugin-*.whl"))
    with zipfile.ZipFile(wheel) as z:
        bundled = {n[len("chatflow_plugin/_bundled/"):]: hashlib.sha256(z.read(n)).hexdigest()
                   for n in z.namelist() if n.startswith("chatflow_plugin/_bundled/")}
    expected = {str(p.relative_to(ROOT)): hashlib.sha256(p.read_bytes()).hexdigest()
                for p in list((ROOT / "models").rglob("*.json")) + list((ROOT / "corpora").rglob("*.jsonl"))}
    assert expected and all(bundled.get(k) == v for k, v in expected.items())   # the same bytes, nothing missing
    assert not any(k.endswith(".py") for k in bundled)                          # data only, no generator code


def test_paths_in_generated_files_are_relative_inside_the_tree_else_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = Path("out")
    assert path_for_file(out / "data" / "train", out / "mixtures" / "m.json", tree=out) == "../data/train"
    assert path_for_file("/opt/corpus", out / "mixtures" / "m.json", tree=out) == "/opt/corpus"
    assert path_for_file("elsewhere", out / "m.json", tree=out) == str(tmp_path / "elsewhere")   # outside the tree
    assert path_for_file(out / "x", out / "m.json") == str(tmp_path / "out" / "x")              # no tree: absolute
    # read back from anywhere
    monkeypatch.chdir("/")
    assert resolve_from_file("../data/train", tmp_path / "out" / "mixtures" / "m.json") == tmp_path / "out/data/train"
    assert resolve_from_file("/opt/corpus", tmp_path / "m.json") == Path("/opt/corpus")


def test_version_flag(capsys):
    from chatflow_plugin.cli import main

    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"chatflow-plugin {__version__}"


def test_readme_has_the_two_fresh_machine_commands_ci_runs():
    sys.path.insert(0, str(ROOT / ".ci"))
    try:
        from readme_commands import fresh_machine_commands
    finally:
        sys.path.pop(0)
    main_job, tests = fresh_machine_commands((ROOT / "README.md").read_text(encoding="utf-8"))[:2]
    assert main_job.startswith("pip install torch==2.13.0 && ") and "-c constraints.txt" in main_job
    assert "chatflow demo --quick" in main_job and " -e " not in main_job     # a regular install
    assert "-c constraints.txt" in tests and tests.endswith("python -m pytest -q tests")
    assert os.access(ROOT / ".ci" / "run", os.X_OK)
