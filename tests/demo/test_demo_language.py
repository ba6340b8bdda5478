"""The demo's language dimension: the target language comes from the base mixture, and the same recipe runs for
Japanese on data the user points it at (small Japanese text written here)."""
from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

pytest.importorskip("transformers")

from chatflow_plugin.cli import main as chatflow_main  # noqa: E402
from chatflow_plugin.data.mixture import parse_mixture  # noqa: E402
from chatflow_plugin.demo.groups import base_mixture, groups_in, target_language  # noqa: E402
from chatflow_plugin.errors import ChatflowError  # noqa: E402
from chatflow_plugin.languages import get_language, in_scripts  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
JA_MIXTURE = ROOT / "models" / "mixtures" / "demo_ja.json"
# (English, Japanese) sentence pairs written for this test
PAIRS = [("The station is near the river.", "駅は川の近くにあります。"),
         ("My sister reads a book every night.", "姉は毎晩本を読みます。"),
         ("It rained all day yesterday.", "昨日は一日中雨が降りました。"),
         ("The teacher wrote the answer on the board.", "先生は答えを黒板に書きました。"),
         ("We bought apples and bread at the market.", "私たちは市場でりんごとパンを買いました。"),
         ("The cat is sleeping under the table.", "猫はテーブルの下で寝ています。"),
         ("This town has a small museum.", "この町には小さな博物館があります。"),
         ("He drinks coffee every morning.", "彼は毎朝コーヒーを飲みます。"),
         ("The mountain is covered with snow in winter.", "冬になると山は雪で覆われます。"),
         ("Please close the window.", "窓を閉めてください。")]
QA = [("日本の首都はどこですか。", "日本の首都は東京です。"), ("一週間は何日ですか。", "一週間は七日です。"),
      ("りんごは何色ですか。", "りんごは赤い色をしています。"), ("富士山はどこにありますか。", "富士山は静岡県と山梨県の間にあります。")]


def _jsonl(path: Path, records: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")


def japanese_data_dir(root: Path, n: int = 60, seed: int = 0) -> Path:
    """One folder per group of models/mixtures/demo_ja.json (code: the demo reads the standard library)."""
    rng = random.Random(seed)

    def doc(side: int, k: int) -> str:
        return ("" if side else " ").join(rng.choice(PAIRS)[side] for _ in range(k))

    _jsonl(root / "en_corpus" / "a.jsonl", [{"text": doc(0, 8)} for _ in range(n)])
    _jsonl(root / "ja_corpus" / "a.jsonl", [{"text": doc(1, 8)} for _ in range(n)])
    _jsonl(root / "parallel" / "a.jsonl", [dict(zip(("en", "ja"), rng.choice(PAIRS))) for _ in range(n)])
    _jsonl(root / "en_inst" / "a.jsonl", [{"instruction": f"Translate: {ja}", "input": "", "output": en}
                                          for en, ja in (rng.choice(PAIRS) for _ in range(n))])
    _jsonl(root / "ja_inst" / "a.jsonl", [{"conversations": [{"from": "human", "value": q}, {"from": "gpt", "value": a}]}
                                          for q, a in (rng.choice(QA) for _ in range(n))])
    return root


def test_the_target_language_comes_from_the_base_mixture():
    assert target_language() == "zh" and target_language(base_mixture(JA_MIXTURE)) == "ja"
    ja = base_mixture(JA_MIXTURE)
    assert groups_in("ja", spec=ja) == ["ja_corpus", "ja_inst"] and groups_in("en", ("corpus",), ja) == ["en_corpus"]
    assert ja.groups[2].sources[0].fields == ("en", "ja")          # from the group's language en-ja
    two = parse_mixture({"T_grow": 1, "groups": [
        {"name": n, "alpha": 1, "beta": 1, "language": lang, "sources": [{"name": n, "kind": "corpus", "paths": ["x"]}]}
        for n, lang in (("en_corpus", "en"), ("ja_corpus", "ja"), ("ko_corpus", "ko"))]})
    with pytest.raises(ChatflowError, match="exactly one other language .* en, ja, ko"):
        target_language(two)


@pytest.mark.slow
def test_the_demo_adapts_to_japanese_on_the_users_data(tmp_path, capsys):
    data = japanese_data_dir(tmp_path / "data")
    out = tmp_path / "demo"
    argv = ["demo", "--quick", "--mixture", str(JA_MIXTURE), "--data_dir", str(data), "--output_dir", str(out),
            "--foundation_steps", "10", "--train_steps", "6"]
    assert chatflow_main(argv) == 0
    japanese = in_scripts(get_language("ja").expansion_scripts)
    added = (out / "tokenizer" / "added_pieces.txt").read_text(encoding="utf-8").split()
    assert added and all(len(p) == 1 and japanese(p) for p in added)
    # kana are mined with the kanji (what the English tokenizer already has, from the translation instructions of
    # en_inst, is not new): どこ, 富士山 only occur in the Japanese conversations
    assert {"ど", "富", "士"} <= set(added) and any(in_scripts(["hiragana"])(p) for p in added)
    assert json.loads((out / "mixtures" / "dynamic.json").read_text())["groups"][2]["sources"][0]["fields"] == \
        ["en", "ja"]
    generations = json.loads((out / "generations.json").read_text(encoding="utf-8"))
    assert set(generations) == {"ja", "en"} and generations["ja"]["instruction"] == get_language("ja").prompt
    report = (out / "report" / "report.md").read_text(encoding="utf-8")
    assert "| ja_corpus |" in report and "'Japanese acquired'" in report and "C-Eval" not in report
    context = json.loads((out / "report" / "context.json").read_text(encoding="utf-8"))
    assert context["target_language"] == "ja" and context["group_languages"]["ja_inst"] == "ja"
    # the held-out report again from the run folders, the target language read back from the context
    assert chatflow_main(["demo-report", "--runs_dir", str(out / "runs"), "--output_dir", str(tmp_path / "again"),
                          "--context", str(out / "report" / "context.json")]) == 0
    assert "'Japanese acquired'" in (tmp_path / "again" / "report.md").read_text(encoding="utf-8")
