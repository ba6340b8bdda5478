"""The search machinery on a synthetic objective with a known optimum (a mixing-law function of the schedule in
place of training): the fitted model, the optimiser, and `chatflow search`'s folder (resume, same mixture file
byte for byte, printed commands, collection, refusals)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from chatflow_plugin.data.mixture import load_mixture
from chatflow_plugin.data.preprocess import preprocess
from chatflow_plugin.errors import ChatflowError
from chatflow_plugin.search import folder as search_folder
from chatflow_plugin.search.model import fit_model, ranks, schedule_features, spearman
from chatflow_plugin.search.objective import parse_constraint, parse_objective
from chatflow_plugin.search.optimize import optimize
from chatflow_plugin.search.run import SearchOptions, run_search
from chatflow_plugin.search.space import default_space
from search_support import GROUPS, mixing_law, mixture_data, mixture_spec, split_dataset, synthetic_runner, write_raw

N = 100.0
# Tolerance: the chosen schedule's TRUE objective is within TOLERANCE of the true constrained optimum, and its
# true constraint excess is at most EXCESS (the reference's objective is ~0.028 above the optimum).
TOLERANCE = 0.012
EXCESS = 0.03


def _truth(space, values):
    return dict(zip(GROUPS, mixing_law(schedule_features(space.schedule(values, N), N))))


def _true_optimum(space, objective, constraint, reference):
    """The optimum of the synthetic function itself, by a dense scan plus a fine local search."""
    best = None
    for u in space.design(6000, seed=11):
        losses = _truth(space, space.values(u))
        if constraint.excess(losses, reference) <= 0 and (best is None or objective.value(losses) < best):
            best = objective.value(losses)
    return best


def test_ranks_and_spearman():
    assert ranks([3.0, 1.0, 2.0, 1.0]).tolist() == [4.0, 1.5, 3.0, 1.5]
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)


def test_a_known_optimum_is_found_within_tolerance():
    spec = mixture_spec()
    space = default_space(spec)
    objective = parse_objective("mean(zh, inst)", GROUPS)
    constraint = parse_constraint("en <= reference + 0.05", GROUPS)
    reference_features = schedule_features(spec.schedule(), N)
    reference = dict(zip(GROUPS, mixing_law(reference_features)))
    rows = [reference_features] + [schedule_features(space.schedule(space.values(u), N), N)
                                   for u in space.design(46, seed=0)]
    losses = np.array([mixing_law(r) for r in rows])
    model = fit_model(rows, losses, GROUPS, lambda r: objective.value(dict(zip(GROUPS, r))))
    assert model.quality["objective"]["spearman"] >= 0.9          # the law is smooth: the model must rank it well
    predicted_reference = dict(zip(GROUPS, model.predict([reference_features])[0]))
    choice = optimize(space, model, N, objective, [constraint], predicted_reference, seed=0)
    truth = _truth(space, choice.values)
    optimum = _true_optimum(space, objective, constraint, reference)
    assert objective.value(reference) - optimum > 0.02                  # there is something to find
    assert objective.value(truth) - optimum <= TOLERANCE
    assert constraint.excess(truth, reference) <= EXCESS
    assert choice.feasible
    chosen_features = schedule_features(space.schedule(choice.values, N), N)
    assert model.outside([chosen_features])[0] == 0                   # no extrapolation beyond the proxies


def test_the_choice_stays_where_the_proxies_were():
    """Few proxies in a wide space: a linear model would send everything to the objective's group; the choice
    keeps every group's exposure within what the proxies measured."""
    spec = mixture_spec()
    space = default_space(spec)
    objective = parse_objective("zh", GROUPS)
    rows = [schedule_features(space.schedule(space.values(u), N), N) for u in space.design(8, seed=0)]
    losses = np.array([mixing_law(r) for r in rows])
    model = fit_model(rows, losses, GROUPS, lambda r: objective.value(dict(zip(GROUPS, r))))
    choice = optimize(space, model, N, objective, [], None, seed=0, candidates=256)
    exposure = schedule_features(space.schedule(choice.values, N), N)["exposure"]
    seen = np.array([r["exposure"] for r in rows])
    assert (exposure <= seen.max(axis=0) + 1e-9).all() and (exposure >= seen.min(axis=0) - 1e-9).all()
    assert exposure[1] > np.percentile(seen[:, 1], 75)                # much zh, but no more than was seen


def _touch(path):
    path.write_text("{}")
    return path


@pytest.fixture(scope="module")
def sets(tmp_path_factory, spm_model) -> dict:
    """train/valid/test of one `chatflow preprocess --split`, and the mixture file."""
    return split_dataset(tmp_path_factory.mktemp("searchsets"), spm_model)


def _options(tmp_path, sets, **kw) -> SearchOptions:
    base = dict(output_dir=str(tmp_path / "search"), dataset_dir=str(sets["train"]), heldout_dir=str(sets["valid"]),
                test_dir=str(sets["test"]), objective="mean(zh, inst)", constraint=["en <= reference + 0.05"],
                mixture=str(sets["mixture"]), model_config=str(_touch(tmp_path / "config.json")), train_steps=10,
                micro_batch_size=10, proxies=12, seeds=3, candidates=512)
    base.update(kw)
    return SearchOptions(**base)


@pytest.fixture
def calls(monkeypatch) -> list:
    made: list = []
    monkeypatch.setattr(search_folder, "run_all", synthetic_runner(made))
    return made


def test_search_writes_the_mixture_report_and_a_rerun_trains_nothing(tmp_path, sets, calls, capsys):
    options = _options(tmp_path, sets)
    results = run_search(options)
    assert len(calls) == 12 + 3 * 3                                   # proxies, then 3 seeds x 3 schedules
    out = tmp_path / "search"
    chosen = (out / "chosen_mixture.json").read_bytes()
    report = (out / "report" / "report.md").read_text()
    assert "Spearman" in report and "chosen - reference" in report and "test split" in report
    for name in ("schedule.png", "cv.png", "report.json"):
        assert (out / "report" / name).is_file()
    assert results["final"]["paired"]["chosen - reference"]["objective"]["n"] == 3
    calls.clear()
    run_search(options)
    assert calls == []                                               # nothing trained again
    assert (out / "chosen_mixture.json").read_bytes() == chosen      # byte for byte


def test_an_interrupted_search_resumes_where_it_stopped(tmp_path, sets, monkeypatch):
    made: list = []
    runner = synthetic_runner(made)

    def dies_after_five(runs, workers, logs, say):
        runner([r for r in runs if not r.finished][:5], workers, logs, say)
        raise KeyboardInterrupt

    monkeypatch.setattr(search_folder, "run_all", dies_after_five)
    with pytest.raises(KeyboardInterrupt):
        run_search(_options(tmp_path, sets, seeds=0))
    assert len(made) == 5
    monkeypatch.setattr(search_folder, "run_all", runner)
    run_search(_options(tmp_path, sets, seeds=0))
    assert len(made) == 12 and len(set(made)) == 12                # the 5 finished ones were not trained again


def test_more_proxies_keep_the_runs_made(tmp_path, sets, calls):
    run_search(_options(tmp_path, sets, seeds=0))
    calls.clear()
    run_search(_options(tmp_path, sets, seeds=0, proxies=15))
    assert calls == ["p012", "p013", "p014"]


def test_print_commands_then_collect(tmp_path, sets, calls, capsys):
    options = _options(tmp_path, sets, print_commands=True)
    assert run_search(options) == {"printed": "proxies"}
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 12 and all(line.startswith("chatflow train ") for line in lines)
    assert "--output_dir " + str((tmp_path / "search" / "proxies" / "p000").resolve()) in lines[0]
    assert (tmp_path / "search" / "commands.txt").read_text().splitlines() == lines
    assert calls == []
    with pytest.raises(ChatflowError, match="12 proxy run"):
        run_search(_options(tmp_path, sets, collect_only=True))
    run_search(_options(tmp_path, sets, seeds=0))                          # "the scheduler" trains them
    calls.clear()
    results = run_search(_options(tmp_path, sets, seeds=0, collect_only=True))
    assert calls == [] and results["final"] is None
    capsys.readouterr()
    run_search(_options(tmp_path, sets, seeds=0, print_commands=True))   # nothing left: no line for a scheduler
    assert capsys.readouterr().out == ""


def test_packaged_names_stand_for_their_files(tmp_path, sets):
    options = search_folder.resolve_names(_options(tmp_path, sets, model_config="tiny", mixture="table1"))
    assert options.model_config.endswith("demo_tiny.json") and Path(options.model_config).is_file()
    assert options.mixture.endswith("chatflow_table1.json") and Path(options.mixture).is_file()


def test_a_folder_of_other_settings_is_refused(tmp_path, sets, calls):
    run_search(_options(tmp_path, sets, seeds=0))
    with pytest.raises(ChatflowError, match="other proxy"):
        run_search(_options(tmp_path, sets, seeds=0, train_steps=11))
    with pytest.raises(ChatflowError, match="other seed"):
        run_search(_options(tmp_path, sets, seeds=0, seed=1))
    with pytest.raises(ChatflowError, match="other test_dir"):
        run_search(_options(tmp_path, sets, seeds=0, test_dir=str(shutil.copytree(sets["test"], tmp_path / "t2"))))
    # another objective is a new question on the same proxies: nothing trained, another choice
    calls.clear()
    run_search(_options(tmp_path, sets, seeds=0, objective="zh", constraint=[]))
    assert calls == []


@pytest.mark.parametrize("kw, message", [
    (dict(model_config=""), "exactly one of --model_config"),
    (dict(proxies=5), "--proxies must be at least 7"),
    (dict(test_dir=""), "give --test_dir"),
    (dict(ladder=2), "--ladder needs"),
    (dict(objective="mean(zh, ja)"), "'ja' is not a group"),
    (dict(print_commands=True, collect_only=True), "exclude each other"),
    (dict(model_config="no/such/config.json"), "--model_config no/such/config.json: not found"),
])
def test_bad_options_are_clear_errors(tmp_path, sets, calls, kw, message):
    with pytest.raises(ChatflowError, match=message):
        run_search(_options(tmp_path, sets, **kw))


def test_final_reruns_at_their_own_length(tmp_path, sets, calls):
    results = run_search(_options(tmp_path, sets, seeds=2, final_train_steps=30, run_samples=300))
    finals = [name for name in calls if name.startswith("final/")]
    assert len(finals) == 6 and all(name.startswith("final/30steps/") for name in finals)
    out = tmp_path / "search"
    # the chosen mixture for the full run (300 samples) is the one the final runs trained (30 steps x 10)
    final_chosen = json.loads((out / "mixtures" / "final" / "30steps" / "chosen.json").read_text())
    assert final_chosen["T_grow"] == json.loads((out / "chosen_mixture.json").read_text())["T_grow"]
    reference = json.loads((out / "mixtures" / "final" / "30steps" / "reference.json").read_text())
    assert reference["T_grow"] == 60                    # written for 300 samples: as the mixture file says
    assert results["final"]["train_steps"] == 30


def test_the_ladder_reruns_the_best_and_worst(tmp_path, sets, calls):
    results = run_search(_options(tmp_path, sets, seeds=0, ladder=2,
                                  ladder_model_config=str(_touch(tmp_path / "big.json")),
                                  ladder_train_steps=20))
    ladder = results["ladder"]
    assert len(ladder["runs"]) == 4 and ladder["size"]["train_steps"] == 20
    assert ladder["spearman"] == pytest.approx(1.0)     # the synthetic law is scale-free in fractions of the run
    assert sum(name.startswith("ladder/") for name in calls) == 4


def test_the_test_split_is_recorded_and_must_share_no_document(tmp_path, sets, calls, spm_model):
    run_search(_options(tmp_path, sets, seeds=0))
    record = json.loads((tmp_path / "search" / "search.json").read_text())
    test = record["test_dir"]
    assert test["path"] == str(sets["test"].resolve()) and test["content"].startswith("xxh3_128:")
    assert test["split"]["part"] == "test" and [n for n, _ in test["split"]["parts"]] == ["train", "valid", "test"]
    assert record["heldout_dir"]["split"]["part"] == "valid" and record["dataset_dir"]["split"]["part"] == "train"
    report = (tmp_path / "search" / "report" / "report.md").read_text()
    assert f"{sets['test'].resolve()} (part 'test' of the split train:0.6,valid:0.2,test:0.2 (seed 0)" in report
    # the validation part as the test set: the search would be scored on what it chose on
    with pytest.raises(ChatflowError, match=r"--test_dir .* shares \d+ document\(s\) with --heldout_dir .*never "
                                            r"looked at"):
        run_search(_options(tmp_path, sets, seeds=0, output_dir=str(tmp_path / "a"), test_dir=str(sets["valid"])))
    # a test set tokenized from the whole corpus shares documents with the training part
    whole = tmp_path / "whole"
    preprocess(load_mixture(sets["mixture"]), spm_model, whole, workers=1)
    with pytest.raises(ChatflowError, match=r"--test_dir .* shares \d+ document\(s\) with --dataset_dir"):
        run_search(_options(tmp_path, sets, seeds=0, output_dir=str(tmp_path / "b"), test_dir=str(whole)))
    assert not (tmp_path / "a" / "search.json").exists() and not (tmp_path / "b" / "search.json").exists()


def test_a_test_set_without_a_group_and_a_split_folder_are_named(tmp_path, sets, calls, spm_model):
    data = mixture_data(str(write_raw(tmp_path / "other", n_docs=20, seed=7)))
    data["groups"] = data["groups"][:2]                                  # en and zh only
    (tmp_path / "two.json").write_text(json.dumps(data))
    preprocess(load_mixture(tmp_path / "two.json"), spm_model, tmp_path / "two", workers=1)
    with pytest.raises(ChatflowError, match=r"--test_dir .* has no documents of group\(s\) inst"):
        run_search(_options(tmp_path, sets, seeds=0, test_dir=str(tmp_path / "two")))
    parts = sets["train"].parent
    with pytest.raises(ChatflowError, match=f"give --dataset_dir {parts}/train --heldout_dir {parts}/valid "
                                            f"--test_dir {parts}/test"):
        run_search(_options(tmp_path, sets, dataset_dir=str(parts)))


def test_a_folder_trained_otherwise_is_refused_by_name(tmp_path, sets, calls):
    run_search(_options(tmp_path, sets, seeds=0))
    record_path = tmp_path / "search" / "proxies" / "p004" / "chatflow_run.json"
    record = json.loads(record_path.read_text())
    edited = dict(record, options=dict(record["options"], heldout_dir=str(sets["test"])))
    record_path.write_text(json.dumps(edited))
    with pytest.raises(ChatflowError, match=r"p004: a finished run that was not trained as .*heldout_dir"):
        run_search(_options(tmp_path, sets, seeds=0))
    record_path.write_text(json.dumps(dict(record, global_batch=80, world_size=8)))   # torchrun on 8 processes
    with pytest.raises(ChatflowError, match=r"p004: .*80 samples per step on 8 process\(es\) \(this search: 10"):
        run_search(_options(tmp_path, sets, seeds=0))
    record_path.write_text(json.dumps(record))
    calls.clear()
    run_search(_options(tmp_path, sets, seeds=0))
    assert calls == []


def test_a_model_no_better_than_the_mean_is_said_to_be(tmp_path, sets, monkeypatch):
    """Proxies whose losses are noise, unrelated to the schedule: the report says the choice is not supported."""
    def noise(features):
        rng = np.random.default_rng(int(features["exposure"].sum() * 1e6 + features["late"][0] * 1e9))
        return 3.0 + 0.05 * rng.standard_normal(len(GROUPS))

    monkeypatch.setattr(search_folder, "run_all", synthetic_runner([], law=noise))
    results = run_search(_options(tmp_path, sets, seeds=0))
    assert results["model"]["quality"]["objective"]["skill"] <= 0
    assert "the chosen schedule is not supported by it" in (tmp_path / "search" / "report" / "report.md").read_text()
