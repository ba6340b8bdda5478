"""`chatflow demo --search`: the demo's data, foundation and expansion, then a small search on the demo's split (its
valid part for the proxies, its test part for the final re-runs) whose report compares the chosen schedule with the
base mixture's and the static one on the test part."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("transformers")

from chatflow_plugin.cli import main as chatflow_main  # noqa: E402
from chatflow_plugin.data.mixture import load_mixture  # noqa: E402


@pytest.mark.slow
def test_demo_search_runs_and_a_rerun_trains_nothing(tmp_path):
    args = ["demo", "--quick", "--search", "--output_dir", str(tmp_path / "demo"), "--search_proxies", "7",
            "--train_steps", "6", "--proxy_steps", "4", "--foundation_steps", "4", "--workers", "2"]
    assert chatflow_main(args) == 0
    search = tmp_path / "demo" / "search"
    report = (search / "report" / "report.md").read_text()
    assert "mean(zh_corpus, zh_inst)" in report and "chosen - reference" in report and "6 steps per run" in report
    assert json.loads((search / "search.json").read_text())["proxy"]["train_steps"] == 4
    chosen = load_mixture(search / "chosen_mixture.json")
    assert chosen.group_names == ["en_corpus", "zh_corpus", "parallel", "en_inst", "zh_inst", "code"]
    splits = json.loads((tmp_path / "demo" / "data" / "split.json").read_text())
    assert all(g["train_documents"] > 0 and g["valid_documents"] > 0 and g["test_documents"] > 0
               for g in splits["groups"].values())
    record = json.loads((search / "search.json").read_text())      # validated on valid, scored on test
    assert record["heldout_dir"]["path"].endswith("shards/mixture_valid")
    assert record["test_dir"]["path"].endswith("shards/mixture_test")
    before = {p: p.stat().st_mtime_ns for p in search.glob("proxies/*/final/chatflow_train.json")}
    first = (search / "chosen_mixture.json").read_bytes()
    assert chatflow_main(args) == 0
    assert {p: p.stat().st_mtime_ns for p in search.glob("proxies/*/final/chatflow_train.json")} == before
    assert (search / "chosen_mixture.json").read_bytes() == first
