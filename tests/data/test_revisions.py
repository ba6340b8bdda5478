"""Mixture revisions: samples before a change stay, counts continue, the new schedule applies from the change."""
import json

import numpy as np
import pytest

from chatflow_plugin.data.batches import MixtureDataset
from chatflow_plugin.data.mixture import load_mixture, parse_mixture
from chatflow_plugin.data.preprocess import preprocess
from chatflow_plugin.data.revisions import (ADAPTIVE, MixtureHistory, MixtureRevision, load_mixture_file,
                                            mixture_change, write_history)
from chatflow_plugin.data.sampler import MixtureSampler, Revision
from chatflow_plugin.data.schedule import LinearGrowHold, Piecewise
from chatflow_plugin.data.shards import ShardSet
from chatflow_plugin.errors import ChatflowError
from test_preprocess import make_mixture

ALPHA, BETA = [0.6, 0.05, 0.25, 0.1], [0.15, 0.5, 0.05, 0.3]
ROWS = [97, 40, 13, 61, 7, 19]
GROUP_OF = [0, 1, 1, 2, 3, 3]
SHARES = [1, 3, 1, 1, 1, 1]


def base_revision(t_grow=3000) -> Revision:
    return Revision(0, LinearGrowHold(ALPHA, BETA, t_grow), range(4), range(6), GROUP_OF, SHARES)


def revised_sampler(*later: Revision, n_groups=4) -> MixtureSampler:
    return MixtureSampler.revised([base_revision(), *later], n_groups, ROWS, seed=5)


def test_one_revision_is_the_plain_sampler():
    plain = MixtureSampler(LinearGrowHold(ALPHA, BETA, 3000), GROUP_OF, ROWS, SHARES, seed=5)
    a, b = plain.draw(np.arange(8000)), revised_sampler().draw(np.arange(8000))
    for field in ("group", "source", "row", "epoch"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))


def test_a_change_keeps_the_past_and_continues_the_counts():
    s = 2500
    flipped = Piecewise([0], [[0.1, 0.1, 0.1, 0.7]])
    sampler = revised_sampler(Revision(s, flipped, range(4), range(6), GROUP_OF, SHARES))
    before, after = revised_sampler().draw(np.arange(6000)), sampler.draw(np.arange(6000))
    for field in ("group", "source", "row", "epoch"):       # samples 0..s-1 are exactly what they were
        np.testing.assert_array_equal(getattr(before, field)[:s], getattr(after, field)[:s])
    assert (before.group[s:] != after.group[s:]).any()
    # from s on the counts are the counts consumed at s plus the new schedule's integral from s: no burst
    at_s = np.bincount(after.group[:s], minlength=4)
    running = at_s + np.cumsum(np.eye(4, dtype=int)[after.group[s:]], axis=0)
    expected = at_s + flipped.expected_counts(np.arange(s + 1, 6001), start=s)
    assert np.abs(running - expected).max() < 2.0
    np.testing.assert_array_equal(sampler.group_counts(6000), running[-1])
    np.testing.assert_array_equal(sampler.group_counts(s), at_s)
    np.testing.assert_allclose(sampler.probabilities([s - 1, s]), [LinearGrowHold(ALPHA, BETA, 3000).probabilities(s - 1),
                                                                  [0.1, 0.1, 0.1, 0.7]])


def test_sources_continue_their_epoch_without_repeating_a_window():
    s = 1777
    sampler = revised_sampler(Revision(s, Piecewise([0], [[1, 1, 1, 1]]), range(4), range(6), GROUP_OF,
                                       [1, 1, 5, 1, 1, 1]))
    d = sampler.draw(np.arange(9000))
    for source, rows in enumerate(ROWS):
        sel = d.source == source
        counts = np.arange(sel.sum())
        np.testing.assert_array_equal(d.epoch[sel], counts // rows)           # one count across the change
        for e in range(int(sel.sum()) // rows):
            assert sorted(d.row[sel][d.epoch[sel] == e].tolist()) == list(range(rows))


def test_groups_and_sources_can_come_and_go():
    # drop group 2 (source 3), move source 1 into group 0, add a fifth group drawing a new source 6 and source 0
    rows = ROWS + [11]
    later = Revision(1000, Piecewise([0, 3000], [[1, 1, 1, 1], [1, 3, 1, 6]], "cosine"), [0, 1, 3, 4],
                     [1, 2, 4, 5, 6, 0], [0, 1, 2, 2, 3, 3], [1, 1, 1, 1, 1, 1])
    sampler = MixtureSampler.revised([base_revision(), later], 5, rows, seed=5)
    d = sampler.draw(np.arange(5000))
    assert set(d.group[1000:].tolist()) == {0, 1, 3, 4} and 4 not in d.group[:1000]
    assert 3 not in d.source[1000:] and 6 in d.source[1000:]
    assert set(d.source[1000:][d.group[1000:] == 4].tolist()) == {0, 6}
    assert set(d.source[1000:][d.group[1000:] == 0].tolist()) == {1}        # group 0 now draws a source of group 1
    # source 0 continues from what it had consumed in the old grouping
    sel = d.source == 0
    np.testing.assert_array_equal(d.epoch[sel], np.arange(sel.sum()) // rows[0])
    # random access agrees with a sequential pass
    perm = np.random.default_rng(0).permutation(5000)
    shuffled = sampler.draw(perm)
    np.testing.assert_array_equal(shuffled.row[np.argsort(perm)], d.row)


def test_catch_up_makes_up_the_difference_over_the_given_samples():
    s, h = 2000, 2000
    target = LinearGrowHold([0.25] * 4, [0.25] * 4, 10)          # uniform from t = 0
    sampler = revised_sampler(Revision(s, target, range(4), range(6), GROUP_OF, SHARES, catch_up=h))
    counts = sampler.group_counts(s + h)
    assert np.abs(counts - target.expected_counts(s + h)).max() < 2      # caught up with uniform-from-0
    plain = revised_sampler(Revision(s, target, range(4), range(6), GROUP_OF, SHARES))
    assert np.abs(plain.group_counts(s + h) - target.expected_counts(s + h)).max() > 100   # did not
    np.testing.assert_array_equal(sampler.draw(np.arange(s)).group, plain.draw(np.arange(s)).group)
    with pytest.raises(ValueError, match="catch-up over 100 samples is too short"):
        revised_sampler(Revision(s, target, range(4), range(6), GROUP_OF, SHARES, catch_up=100))


def test_revisions_must_start_at_zero_and_increase():
    with pytest.raises(ValueError, match="start at sample 0"):
        MixtureSampler.revised([base_revision(), base_revision()], 4, ROWS)


# -- the spec-level history and the dataset ------------------------------------------------------------

@pytest.fixture(scope="module")
def dataset(tmp_path_factory, spm_model):
    root = tmp_path_factory.mktemp("revisions")
    mixture = make_mixture(root / "data")
    out = root / "shards"
    preprocess(load_mixture(mixture), spm_model, out, workers=1)
    return mixture, out


def _changed(mixture, **weights) -> dict:
    data = json.loads(mixture.read_text())
    for group in data["groups"]:
        if group["name"] in weights:
            group["alpha"], group["beta"] = weights[group["name"]]
    return data


def test_dataset_revision_keeps_drawn_samples_and_refuses_to_rewrite_them(dataset):
    mixture, out = dataset
    ds = MixtureDataset(ShardSet(out))
    plain = MixtureDataset(ShardSet(out)).batch(np.arange(400))
    ds.batch(np.arange(300))
    new = parse_mixture(_changed(mixture, code=(5.0, 5.0)), base_dir=mixture.parent)
    with pytest.raises(ChatflowError, match="samples up to 299 have been drawn"):
        ds.revise(MixtureRevision(200, new, step=10, by="test"))
    ds.revise(MixtureRevision(300, new, step=15, by="test"))
    after = ds.batch(np.arange(400))
    np.testing.assert_array_equal(after["tokens"][:300], plain["tokens"][:300])
    code = ds.group_names.index("code")
    assert (after["group"][300:] == code).mean() > 0.5 > (plain["group"][300:] == code).mean()
    assert len(ds.history) == 2 and ds.spec.groups[-1].schedule_params == {"alpha": 5.0, "beta": 5.0}


def test_history_files_and_changes_rebuild_the_same_order(dataset, tmp_path):
    mixture, out = dataset
    first = load_mixture(mixture)
    ds = MixtureDataset(ShardSet(out), spec=first)
    changed = parse_mixture(_changed(mixture, code=(5.0, 5.0)), base_dir=mixture.parent)
    entries = []
    for revision in (MixtureRevision(120, changed, step=6, by="m2.json", catch_up=0.0),
                     MixtureRevision(200, changed.with_group_factors({"code": 0.5, "en_corpus": 2.0}), step=10,
                                     by=ADAPTIVE, factors={"code": 0.5, "en_corpus": 2.0})):
        entries.append(mixture_change(ds.history, revision, losses={"code": 1.0}))
        ds.revise(revision)
    assert entries[0]["what"] == "mixture" and entries[0]["sample"] == 120 and entries[0]["by"] == "m2.json"
    assert entries[1]["old"] == {"factors": {}} and entries[1]["new"] == {"factors": {"code": 0.5, "en_corpus": 2.0}}
    json.loads(json.dumps(entries))
    rebuilt = MixtureHistory.from_changes(json.loads(json.dumps(MixtureHistory.start(first).to_json())),
                                          json.loads(json.dumps(entries)))
    assert rebuilt == ds.history.map_specs(lambda s: s)
    reference = ds.batch(np.arange(600))
    again = MixtureDataset(ShardSet(out), spec=rebuilt).batch(np.arange(600))
    np.testing.assert_array_equal(again["tokens"], reference["tokens"])
    # written as a history file and read back (e.g. by --mixture): the same order
    path = write_history(ds.history.fixed(), tmp_path / "history.json")
    loaded = load_mixture_file(path)
    assert isinstance(loaded, MixtureHistory) and len(loaded) == 3
    np.testing.assert_array_equal(MixtureDataset(ShardSet(out), spec=loaded).batch(np.arange(600))["tokens"],
                                  reference["tokens"])
    assert isinstance(load_mixture_file(mixture), type(first))


def test_history_refuses_a_seed_change_and_decreasing_samples(dataset):
    mixture, _ = dataset
    first = load_mixture(mixture)
    history = MixtureHistory.start(first).revised(MixtureRevision(50, first))
    with pytest.raises(ChatflowError, match="comes before the last one"):
        history.revised(MixtureRevision(10, first))
    from dataclasses import replace
    with pytest.raises(ChatflowError, match="changes the seed"):
        history.revised(MixtureRevision(80, replace(first, seed=first.seed + 1)))
    with pytest.raises(ChatflowError, match=r"h.json: a chatflow-mixture-history of version 1"):
        MixtureHistory.from_json({"format": "chatflow-mixture-history", "version": 7, "revisions": []}, "h.json")


def test_history_report_finds_the_run_state_of_either_backend(dataset, tmp_path, capsys):
    from chatflow_plugin.cli import main as chatflow_main
    from chatflow_plugin.data.runstate import find_state, first_mixture, write_state

    mixture, out = dataset
    first = load_mixture(mixture)
    changed = parse_mixture(_changed(mixture, code=(5.0, 5.0)), base_dir=mixture.parent)
    history = MixtureHistory.start(first)
    entry = mixture_change(history, MixtureRevision(64, changed, step=8, by="more_code.json"))
    state = dict(step=8, samples_done=64, global_batch=8, micro_batch_size=8, gradient_accumulation_steps=1,
                 world_size=1, dataset=str(out), mixture=first_mixture(history),
                 history=[entry, {"step": 8, "what": "world_size", "old": 2, "new": 1, "time": "t", "sample": 64}],
                 adaptive=None)
    deepspeed = tmp_path / "O"                       # TencentPretrain with DeepSpeed: O/latest names the tag
    (deepspeed / "8").mkdir(parents=True)
    (deepspeed / "latest").write_text("8")
    write_state(deepspeed / "8" / "chatflow_state.json", **state)
    plain = tmp_path / "P"                            # without DeepSpeed: P-<step>.chatflow.json beside P-<step>
    write_state(tmp_path / "P-4.chatflow.json", **dict(state, step=4, history=[]))
    write_state(tmp_path / "P-8.chatflow.json", **state)
    hf = tmp_path / "run"                             # HF: checkpoint-N/ and final/
    (hf / "checkpoint-8").mkdir(parents=True)
    write_state(hf / "checkpoint-8" / "chatflow_state.json", **state)
    assert find_state(deepspeed) == deepspeed / "8" / "chatflow_state.json"
    assert find_state(plain) == tmp_path / "P-8.chatflow.json"
    assert find_state(hf) == hf / "checkpoint-8" / "chatflow_state.json"
    for run in (deepspeed, plain, hf):
        assert chatflow_main(["mixture", "--run", str(run), "--json"]) == 0
        report = json.loads(capsys.readouterr().out)
        assert [(r["step"], r["sample"], r["by"]) for r in report["revisions"]] == [(0, 0, "start"),
                                                                                   (8, 64, "more_code.json")]
        assert report["changes"][0]["what"] == "world_size"
    assert chatflow_main(["mixture", "--run", str(tmp_path / "nothing")]) == 2
    assert "no chatflow run state found" in capsys.readouterr().err
