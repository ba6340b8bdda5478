import json

import numpy as np
import pytest

from chatflow_plugin.errors import ChatflowError
from chatflow_plugin.data.mixture import load_mixture, parse_mixture, parse_source_overrides
from chatflow_plugin.data.sampler import MixtureSampler
from chatflow_plugin.data.schedule import SHAPES, Param, ParamError, Schedule, non_negative, positive


def base(**top):
    spec = {
        "name": "m", "T_grow": 100, "seq_length": 16,
        "groups": [
            {"name": "en", "alpha": 0.7, "beta": 0.2, "sources": [{"name": "en_a", "kind": "corpus", "paths": ["en.jsonl"]}]},
            {"name": "zh", "alpha": 0.3, "beta": 0.8, "sources": [{"name": "zh_a", "kind": "corpus", "paths": "zh.jsonl"}]},
        ],
    }
    spec.update(top)
    return spec


def write(tmp_path, data, name="m.json"):
    path = tmp_path / name
    path.write_text(json.dumps(data) if not isinstance(data, str) else data, encoding="utf-8")
    return path


def test_valid_mixture_loads(tmp_path):
    spec = load_mixture(write(tmp_path, base()))
    assert spec.group_names == ["en", "zh"]
    assert [s.name for _, s in spec.sources] == ["en_a", "zh_a"]
    assert spec.sources[1][1].paths == ("zh.jsonl",)
    assert spec.data_root == tmp_path
    assert spec.warnings == ()


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d.update(extra=1), r"unknown key\(s\) \['extra'\]"),
    (lambda d: d["groups"][0].update(weight=1), r"groups\[0\] \(en\): unknown key"),
    (lambda d: d["groups"][0]["sources"][0].update(colour="red"), r"sources\[0\] \(en_a\): unknown key"),
    (lambda d: d["groups"][0].update(alpha=-0.1), r"groups\[0\] \(en\)\.alpha: must be >= 0"),
    (lambda d: d["groups"][1].update(beta=-1), r"\(zh\)\.beta: must be >= 0"),
    (lambda d: d["groups"][0].update(alpha="0.5"), r"alpha: expected a finite number"),
    (lambda d: d.update(T_grow=0), r"T_grow: must be > 0"),
    (lambda d: d.update(T_grow=-5), r"T_grow: must be > 0"),
    (lambda d: d.pop("T_grow"), r"missing 'T_grow'"),
    (lambda d: d["groups"][1].update(name="en"), r"duplicate group name 'en'"),
    (lambda d: d["groups"][1]["sources"][0].update(name="en_a"), r"duplicate source name 'en_a'"),
    (lambda d: [g.update(alpha=0) for g in d["groups"]], r"all group weights are zero at t = 0"),
    (lambda d: [g.update(beta=0) for g in d["groups"]], r"zero from t = T_grow"),
    (lambda d: d["groups"][0]["sources"][0].update(kind="novel"), r"kind: expected one of"),
    (lambda d: d["groups"][0]["sources"][0].update(paths=[]), r"paths: expected a file path"),
    (lambda d: d["groups"][0].update(sources=[]), r"sources: expected a non-empty list"),
    (lambda d: d.update(groups=[]), r"groups: expected a non-empty list"),
    (lambda d: d.update(seq_length=0), r"seq_length: expected a positive integer"),
    (lambda d: d.update(schedule_unit="steps"), r"schedule_unit: expected one of"),
    (lambda d: d["groups"][0]["sources"][0].update(fields=["en", "en"]), r"fields: expected two distinct"),
    (lambda d: d["groups"][0]["sources"][0].update(share=-2), r"share: must be >= 0"),
])
def test_invalid_mixtures_are_rejected_with_the_field_named(tmp_path, mutate, message):
    data = base()
    mutate(data)
    with pytest.raises(ChatflowError, match=message):
        load_mixture(write(tmp_path, data))


def test_zero_weight_group_is_a_warning(tmp_path):
    data = base()
    data["groups"].append({"name": "off", "alpha": 0, "beta": 0,
                           "sources": [{"name": "off_a", "kind": "code", "paths": ["c.jsonl"]}]})
    spec = load_mixture(write(tmp_path, data))
    assert any("'off'" in w and "never sampled" in w for w in spec.warnings)


def test_duplicate_json_keys_and_bad_json(tmp_path):
    with pytest.raises(ChatflowError, match="duplicate key 'T_grow'"):
        load_mixture(write(tmp_path, '{"T_grow": 1, "T_grow": 2, "groups": []}'))
    with pytest.raises(ChatflowError, match=r"m.json:1:\d+: invalid JSON"):
        load_mixture(write(tmp_path, '{"T_grow": 1,'))
    with pytest.raises(ChatflowError, match="mixture file not found"):
        load_mixture(tmp_path / "nope.json")


def test_missing_files_are_listed(tmp_path):
    spec = load_mixture(write(tmp_path, base()))
    (tmp_path / "en.jsonl").write_text('{"text": "a"}\n')
    with pytest.raises(ChatflowError, match=r"source 'zh_a': no file matches .*zh.jsonl"):
        spec.resolve_files()


def test_globs_data_root_and_overrides(tmp_path):
    data = base()
    data["groups"][0]["sources"][0]["paths"] = ["en/*.jsonl"]
    data["data_root"] = "data"
    spec = load_mixture(write(tmp_path, data))
    root = tmp_path / "data"
    (root / "en").mkdir(parents=True)
    for name in ("b.jsonl", "a.jsonl"):
        (root / "en" / name).write_text('{"text": "x"}\n')
    (root / "zh.jsonl").write_text('{"text": "y"}\n')
    files = spec.resolve_files()
    assert [f.name for f in files["en_a"]] == ["a.jsonl", "b.jsonl"]
    other = tmp_path / "elsewhere.jsonl"
    other.write_text('{"text": "z"}\n')
    spec2 = spec.with_overrides(source_paths=parse_source_overrides([f"zh_a={other}"]))
    assert spec2.resolve_files()["zh_a"] == [other]
    with pytest.raises(ChatflowError, match="unknown sources"):
        spec.with_overrides(source_paths={"nope": ["x"]})
    with pytest.raises(ChatflowError, match="NAME=PATH"):
        parse_source_overrides(["justapath"])


def test_to_json_round_trips(tmp_path):
    spec = load_mixture(write(tmp_path, base(seed=7)))
    again = parse_mixture(spec.to_json())
    assert again.groups == spec.groups and again.seed == 7 and again.t_grow == spec.t_grow


def test_schedule_shape_is_checked_and_the_default_stays_implicit(tmp_path):
    with pytest.raises(ChatflowError, match=r"m.json.schedule_shape: expected one of \['linear_grow_hold', 'piecewise'\], got 'cosine'"):
        load_mixture(write(tmp_path, base(schedule_shape="cosine")))
    with pytest.raises(ChatflowError, match=r"schedule_shape: expected one of"):
        load_mixture(write(tmp_path, base(schedule_shape=["linear_grow_hold"])))
    implicit = load_mixture(write(tmp_path, base()))
    explicit = load_mixture(write(tmp_path, base(schedule_shape="linear_grow_hold"), name="e.json"))
    assert explicit.schedule_shape == implicit.schedule_shape == "linear_grow_hold"
    assert explicit.schedule_params == implicit.schedule_params == {"T_grow": 100.0}
    assert [g.schedule_params for g in implicit.groups] == [{"alpha": 0.7, "beta": 0.2}, {"alpha": 0.3, "beta": 0.8}]
    # a paper mixture writes exactly the keys it wrote before shapes existed (manifests, run records)
    data = implicit.to_json()
    assert list(data) == ["name", "seq_length", "T_grow", "schedule_unit", "seed", "data_root", "groups"]
    assert list(data["groups"][0]) == ["name", "alpha", "beta", "language", "sources"]
    assert data["T_grow"] == 100.0 and isinstance(data["T_grow"], float)


# -- a new shape is one class plus one registry entry --------------------------------------------------------

def a_string(value):
    if not isinstance(value, str):
        raise ValueError(f"expected a string, got {value!r}")
    return value


class Switch(Schedule):
    """A test shape: weights ``before`` until ``T_switch``, ``after`` from then on (``after`` >= ``before``)."""

    shape = "switch"
    mixture_keys = {"T_switch": Param(positive), "label": Param(a_string, default="switch")}
    group_keys = {"before": Param(non_negative), "after": Param(non_negative)}

    def __init__(self, before, after, t_switch):
        self.p = np.array([before, after], dtype=float)
        self.p /= self.p.sum(axis=1, keepdims=True)
        self.t_switch = t_switch

    @classmethod
    def from_params(cls, mixture, groups, sample_size=1.0):
        for i, g in enumerate(groups):
            if g["after"] < g["before"]:
                raise ParamError(f"must be >= before ({g['before']}), got {g['after']}", key="after", group=i)
        if sum(g["before"] for g in groups) == 0:
            raise ValueError("every group's 'before' is 0")
        return cls([g["before"] for g in groups], [g["after"] for g in groups], mixture["T_switch"] / sample_size)

    @property
    def n_groups(self):
        return self.p.shape[1]

    @property
    def knots(self):
        return np.array([0.0, self.t_switch])

    def probabilities(self, t):
        return np.where((np.asarray(t, dtype=float) < self.t_switch)[..., None], self.p[0], self.p[1])

    def expected_counts(self, t, start=0.0):
        def from_zero(x):
            x = np.asarray(x, dtype=float)[..., None]
            return np.clip(x, 0, self.t_switch) * self.p[0] + np.clip(x - self.t_switch, 0, None) * self.p[1]
        return from_zero(t) - from_zero(start)


def switch_mixture(**top):
    data = base(**{"schedule_shape": "switch", "T_switch": 64, **top})
    del data["T_grow"]
    for group, (before, after) in zip(data["groups"], [(0.9, 0.9), (0.1, 3.0)]):
        del group["alpha"], group["beta"]
        group.update(before=before, after=after)
    return data


@pytest.fixture
def switch_shape(monkeypatch):
    monkeypatch.setitem(SHAPES, "switch", Switch)


def test_a_registered_shape_drives_parser_and_sampler(tmp_path, switch_shape):
    spec = load_mixture(write(tmp_path, switch_mixture()))
    assert spec.schedule_shape == "switch" and spec.schedule_params == {"T_switch": 64.0, "label": "switch"}
    assert spec.groups[1].schedule_params == {"before": 0.1, "after": 3.0}
    schedule = spec.schedule()
    np.testing.assert_allclose(schedule.probabilities([0, 63, 64]), [[0.9, 0.1], [0.9, 0.1], [0.9 / 3.9, 3 / 3.9]])
    again = parse_mixture(spec.to_json())
    assert again.to_json()["schedule_shape"] == "switch" and again.schedule_params == spec.schedule_params
    assert again.groups == spec.groups
    # times in tokens are divided by seq_length (16 here)
    tokens = load_mixture(write(tmp_path, switch_mixture(schedule_unit="tokens", T_switch=64 * 16), name="t.json"))
    np.testing.assert_array_equal(tokens.schedule().knots, [0.0, 64.0])
    # the sampler needs nothing else: realised counts stay within a sample of the integral
    sampler = MixtureSampler(schedule, [0, 1], [5, 7], [1.0, 1.0])
    groups = sampler.draw(np.arange(400)).group
    running = np.cumsum(np.eye(2, dtype=int)[groups], axis=0)
    assert np.abs(running - schedule.expected_counts(np.arange(1, 401))).max() < 1.0
    np.testing.assert_array_equal(sampler.group_counts(400), running[-1])


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d.update(T_grow=5), r"m.json: unknown key\(s\) \['T_grow'\]; allowed: .*'T_switch'"),
    (lambda d: d["groups"][0].update(alpha=0.5), r"groups\[0\] \(en\): unknown key\(s\) \['alpha'\]; allowed: .*'after'"),
    (lambda d: d.pop("T_switch"), r"m.json: missing 'T_switch'"),
    (lambda d: d.update(T_switch=0), r"m.json.T_switch: must be > 0, got 0"),
    (lambda d: d["groups"][1].pop("after"), r"groups\[1\] \(zh\): missing 'after'"),
    (lambda d: d["groups"][1].update(before="x"), r"groups\[1\] \(zh\)\.before: expected a finite number"),
    (lambda d: d.update(label=3), r"m.json.label: expected a string, got 3"),
    (lambda d: d["groups"][0].update(after=0.5), r"m.json.groups\[0\] \(en\).after: must be >= before \(0.9\), got 0.5"),
    (lambda d: [g.update(before=0) for g in d["groups"]], r"m.json: every group's 'before' is 0"),
])
def test_a_registered_shapes_errors_name_the_file_and_field(tmp_path, switch_shape, mutate, message):
    data = switch_mixture()
    mutate(data)
    with pytest.raises(ChatflowError, match=message):
        load_mixture(write(tmp_path, data))


def test_a_group_never_sampled_under_any_shape_is_a_warning(tmp_path, switch_shape):
    data = switch_mixture()
    data["groups"].append({"name": "off", "before": 0, "after": 0,
                           "sources": [{"name": "off_a", "kind": "code", "paths": ["c.jsonl"]}]})
    spec = load_mixture(write(tmp_path, data))
    assert spec.warnings == ("group 'off' has zero weight throughout the schedule: never sampled",)
