import json

import pytest

from chatflow_plugin.errors import ChatflowError
from chatflow_plugin.data.mixture import load_mixture, parse_mixture, parse_source_overrides


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
