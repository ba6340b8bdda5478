"""Elo / Bradley-Terry: recovery of known ratings from synthetic votes, order independence, bad input, CLI."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from chatflow_plugin.cli import main as chatflow_main
from chatflow_plugin.errors import ChatflowError, DataError
from chatflow_plugin.evaluation.elo import (bradley_terry, online_elo, pair_counts, rate, ratings_json, read_votes,
                                            table3_markdown, to_elo_scale, votes_from_records, win_rate_markdown)

TRUE = {"chatflow-7b": 1150.0, "llama2-chat-7b": 1050.0, "linly-7b": 1000.0, "alpaca-7b": 880.0}


def synthetic_votes(n: int, seed: int = 0, tie_share: float = 0.0) -> list[tuple[str, str, float]]:
    rng = np.random.default_rng(seed)
    names = list(TRUE)
    out = []
    for _ in range(n):
        a, b = rng.choice(len(names), 2, replace=False)
        p_a = 1 / (1 + 10 ** ((TRUE[names[b]] - TRUE[names[a]]) / 400))
        if rng.random() < tie_share:
            s = 0.5
        else:
            s = 1.0 if rng.random() < p_a else 0.0
        out.append((names[a], names[b], s))
    return out


def write_votes(path, records):
    word = {1.0: "a", 0.0: "b", 0.5: "tie"}
    path.write_text("".join(json.dumps({"model_a": a, "model_b": b, "winner": word[s]}) + "\n" for a, b, s in records),
                    encoding="utf-8")
    return path


def test_bradley_terry_recovers_known_ratings_within_bootstrap_interval():
    votes = votes_from_records(synthetic_votes(6000, seed=1))
    r = rate(votes, bootstrap=200, level=0.99, seed=0)
    true = np.array([TRUE[m] for m in r.models])
    true_centered = true - true.mean() + 1000.0   # BT ratings are centred on the initial rating
    assert [r.models[i] for i in r.order()] == sorted(TRUE, key=lambda m: -TRUE[m])
    assert np.all(r.ci_low <= true_centered) and np.all(true_centered <= r.ci_high), (r.bt, r.ci_low, r.ci_high)
    assert np.all(np.abs(r.bt - true_centered) < 40)
    assert np.all(r.ci_low < r.bt) and np.all(r.bt < r.ci_high)


def test_bradley_terry_is_order_independent_and_online_elo_is_not():
    records = synthetic_votes(800, seed=2, tie_share=0.1)
    forward, backward = votes_from_records(records), votes_from_records(records[::-1])
    w1, g1 = pair_counts(forward)
    w2, g2 = pair_counts(backward)
    np.testing.assert_allclose(bradley_terry(w1, g1), bradley_terry(w2, g2), atol=1e-9)
    assert not np.allclose(online_elo(forward, k=32), online_elo(backward, k=32))
    r1, r2 = rate(forward, bootstrap=50, seed=3), rate(backward, bootstrap=50, seed=3)
    np.testing.assert_allclose(r1.bt, r2.bt, atol=1e-6)


def test_online_elo_matches_hand_computation():
    votes = votes_from_records([("x", "y", 1.0), ("x", "y", 0.5)])
    ra = 1000 + 32 * (1 - 0.5)
    rb = 1000 - 32 * 0.5
    e = 1 / (1 + 10 ** ((rb - ra) / 400))
    expected_x = ra + 32 * (0.5 - e)
    got = online_elo(votes, k=32, initial=1000)
    assert got[0] == pytest.approx(expected_x) and got.sum() == pytest.approx(2000)   # zero-sum


def test_two_model_bradley_terry_is_the_log_odds():
    votes = votes_from_records([("x", "y", 1.0)] * 3 + [("y", "x", 1.0)] + [("x", "y", 0.5)] * 2)
    wins, games = pair_counts(votes)
    assert wins[0, 1] == 4 and games[0, 1] == 6
    bt = to_elo_scale(bradley_terry(wins, games))
    assert bt[0] - bt[1] == pytest.approx(400 * math.log10(4 / 2))


def test_win_rate_matrix_counts_ties_as_half():
    votes = votes_from_records([("x", "y", 1.0), ("x", "y", 0.5), ("y", "z", 0.0), ("z", "x", 1.0), ("x", "z", 1.0)])
    r = rate(votes, bootstrap=0, prior=1.0)
    ix = {m: i for i, m in enumerate(r.models)}
    assert r.win_rate[ix["x"], ix["y"]] == pytest.approx(0.75) and r.win_rate[ix["y"], ix["x"]] == pytest.approx(0.25)
    assert r.win_rate[ix["z"], ix["y"]] == 1.0 and r.win_rate[ix["x"], ix["z"]] == 0.5
    md = win_rate_markdown(r)
    assert "| row beats column |" in md and "75%" in md


def test_a_model_that_never_wins_needs_the_prior():
    votes = votes_from_records([("x", "y", 1.0), ("x", "z", 1.0), ("y", "z", 1.0), ("z", "y", 1.0)])
    w, g = pair_counts(votes)
    with pytest.raises(ChatflowError, match="never won or never lost.*--prior"):
        bradley_terry(w, g)
    r = rate(votes, prior=1.0, bootstrap=20)
    assert np.isfinite(r.bt).all() and r.order()[0] == r.models.index("x")


def test_read_votes_skips_and_reports_bad_lines(tmp_path):
    path = tmp_path / "votes.jsonl"
    path.write_text('{"model_a": "x", "model_b": "y", "winner": "a"}\n'
                    '{"model_a": "x", "model_b": "y", "winner": "model_b"}\n'
                    '{"model_a": "x", "model_b": "y", "winner": "tie (bothbad)"}\n'
                    '\n'
                    'not json\n'
                    '{"model_a": "x", "model_b": "x", "winner": "a"}\n'
                    '{"model_a": "x", "winner": "a"}\n'
                    '{"model_a": "x", "model_b": "y", "winner": "draw"}\n', encoding="utf-8")
    votes, problems = read_votes(path)
    assert len(votes) == 3 and list(votes.score_a) == [1.0, 0.0, 0.5]
    assert [p.split(": ", 1)[0].rsplit(":", 1)[1] for p in problems] == ["5", "6", "7", "8"]
    assert "itself" in problems[1] and "missing field 'model_b'" in problems[2] and "'draw'" in problems[3]
    with pytest.raises(DataError, match=r"votes.jsonl:5"):
        read_votes(path, strict=True)
    with pytest.raises(ChatflowError, match="not found"):
        read_votes(tmp_path / "none.jsonl")
    (tmp_path / "bad.jsonl").write_text("nope\n", encoding="utf-8")
    with pytest.raises(ChatflowError, match="no valid votes"):
        read_votes(tmp_path / "bad.jsonl")


def test_table3_markdown_lists_models_by_rating():
    r = rate(votes_from_records(synthetic_votes(600, seed=4)), bootstrap=30)
    md = table3_markdown(r).splitlines()
    assert md[0].startswith("| Rank | Model | Elo (online) | Bradley-Terry | 95% CI")
    assert md[2].startswith("| 1 | chatflow-7b |") and md[-1].startswith("| 4 | alpaca-7b |")


def test_cli_writes_json_markdown_and_png(tmp_path, capsys):
    votes = write_votes(tmp_path / "votes.jsonl", synthetic_votes(400, seed=5, tie_share=0.1))
    out = tmp_path / "out" / "table3"
    assert chatflow_main(["elo", str(votes), "--bootstrap", "40", "--k", "16", "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "400 votes, 4 models" in printed and "| 1 | chatflow-7b |" in printed
    report = json.loads((tmp_path / "out" / "table3.json").read_text())
    assert report["votes"] == 400 and report["settings"]["k"] == 16
    assert report["models"][0]["model"] == "chatflow-7b" and report["models"][0]["ci_low"] < report["models"][0]["ci_high"]
    assert (tmp_path / "out" / "table3_win_rates.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| Rank |" in (tmp_path / "out" / "table3.md").read_text()
    assert chatflow_main(["elo", str(votes), "--k", "0"]) == 2
    assert "--k and --scale must be > 0" in capsys.readouterr().err


def test_non_tie_win_rates_leave_ties_out_and_make_figure_3(tmp_path, capsys):
    records = [("x", "y", 1.0), ("x", "y", 1.0), ("y", "x", 1.0), ("x", "y", 0.5), ("z", "x", 0.5), ("y", "z", 0.0)]
    r = rate(votes_from_records(records), bootstrap=0, prior=1.0)
    ix = {m: i for i, m in enumerate(r.models)}
    wins, games, rates = r.non_tie()
    assert (wins[ix["x"]], games[ix["x"]]) == (2, 3) and rates[ix["x"]] == pytest.approx(2 / 3)
    assert (wins[ix["z"]], games[ix["z"]]) == (1, 1) and r.decisive[ix["z"], ix["y"]] == 1
    assert "66.7% of 3" in table3_markdown(r)
    report = ratings_json(r)
    row = {m["model"]: m for m in report["models"]}["x"]
    assert row["non_tie_wins"] == 2 and row["non_tie_votes"] == 3 and report["non_tie_wins"]["y"]["x"] == 1
    only_ties = rate(votes_from_records([("x", "y", 0.5), ("y", "x", 0.5)]), bootstrap=0, prior=1.0)
    assert np.isnan(only_ties.non_tie()[2]).all() and "| – |" in table3_markdown(only_ties)
    votes = write_votes(tmp_path / "v.jsonl", records)
    assert chatflow_main(["elo", str(votes), "--prior", "1", "--bootstrap", "10", "--output", str(tmp_path / "t3")]) == 0
    assert (tmp_path / "t3_non_tie_win_rates.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "non_tie_win_rates.png" in capsys.readouterr().err


def test_vectorised_bootstrap_equals_one_fit_per_resample():
    """All resamples fitted together give, bit for bit, what fitting each resample alone gives (the same draws
    from the seed's stream, the same tables, the same MM arithmetic and stopping rule per resample), and leave out
    the same resamples: those where a model never won or never lost, without a prior."""
    from chatflow_plugin.evaluation.elo import bootstrap_ratings

    few = votes_from_records([("x", "y", 1.0), ("y", "z", 1.0), ("z", "x", 1.0), ("x", "y", 0.5), ("y", "x", 1.0),
                              ("z", "y", 0.0), ("x", "z", 1.0)])
    many = votes_from_records(synthetic_votes(500, seed=4, tie_share=0.2))
    for votes, prior in ((few, 0.0), (few, 1.0), (many, 0.0)):
        rng = np.random.default_rng(7)
        expected = []
        for _ in range(60):
            weights = np.bincount(rng.integers(0, len(votes), len(votes)), minlength=len(votes)).astype(float)
            try:
                expected.append(to_elo_scale(bradley_terry(*pair_counts(votes, weights), prior)))
            except ChatflowError:
                continue
        got = bootstrap_ratings(votes, 60, prior, seed=7)
        assert got.shape == (len(expected), len(votes.models))
        assert np.array_equal(got, np.array(expected)), (prior, np.max(np.abs(got - np.array(expected))))
        if votes is few and prior == 0.0:
            assert 0 < len(expected) < 60          # some resamples were left out, the same ones
