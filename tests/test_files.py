"""chatflow_plugin.files: JSON and JSON-lines reading with locations, figure saving."""
from __future__ import annotations

import pytest

from chatflow_plugin.errors import ChatflowError, DataError
from chatflow_plugin.files import json_strings, pyplot, read_json, read_jsonl, save_figure


def test_read_jsonl_numbers_lines_and_skips_blank_ones(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_bytes('\ufeff{"a": 1}\n\n   \r\n[2, "二"]\r\n"x"\n{"b": null}'.encode("utf-8"))  # BOM, CRLF, no final newline
    assert list(read_jsonl(path)) == [(1, {"a": 1}), (4, [2, "二"]), (5, "x"), (6, {"b": None})]
    assert [text for _, _, text in read_jsonl(path, with_text=True)] == ['{"a": 1}', '[2, "二"]', '"x"', '{"b": null}']


def test_read_jsonl_errors_name_file_and_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_bytes(b'{"ok": 1}\n{broken\n{"bytes": "\xff\xfe"}\n{"ok": 2}\n')
    with pytest.raises(DataError, match=rf"^{path}:2: invalid JSON \(Expecting property name .* at column 2\)$"):
        list(read_jsonl(path))
    items = list(read_jsonl(path, on_bad_line="yield"))
    assert [n for n, _ in items] == [1, 2, 3, 4] and items[0][1] == {"ok": 1} and items[3][1] == {"ok": 2}
    bad = items[2][1]
    assert isinstance(bad, DataError) and str(bad) == f"{path}:3: invalid UTF-8 at byte 11"
    assert bad.location == f"{path}:3" and bad.reason == "invalid UTF-8 at byte 11"
    with pytest.raises(FileNotFoundError):
        list(read_jsonl(tmp_path / "missing.jsonl"))
    with pytest.raises(ValueError, match="on_bad_line"):
        list(read_jsonl(path, on_bad_line="skip"))


def test_json_strings_walks_every_string_in_order():
    assert list(json_strings({"a": "x", "b": [1, "y", {"c": "z"}], "d": None})) == ["x", "y", "z"]
    assert list(json_strings("solo")) == ["solo"] and list(json_strings(3)) == []


def test_read_json_names_the_file(tmp_path):
    (tmp_path / "c.json").write_text('{"k": 1}', encoding="utf-8")
    assert read_json(tmp_path / "c.json", "config") == {"k": 1}
    with pytest.raises(ChatflowError, match=rf"^{tmp_path / 'no.json'}: config not found$"):
        read_json(tmp_path / "no.json", "config")
    (tmp_path / "bad.json").write_text("{", encoding="utf-8")
    with pytest.raises(ChatflowError, match=rf"^{tmp_path / 'bad.json'}: config is not valid JSON"):
        read_json(tmp_path / "bad.json", "config")


def _figure():
    fig, ax = pyplot().subplots(figsize=(2, 2))
    ax.plot([0, 1], [1, 0])
    return fig


def test_save_figure_writes_the_suffixs_format_atomically_and_frees_the_figure(tmp_path):
    plt = pyplot()
    import matplotlib
    assert matplotlib.get_backend().lower() == "agg"
    before = len(plt.get_fignums())
    png = save_figure(_figure(), tmp_path / "sub" / "a.png", dpi=50)
    assert png == tmp_path / "sub" / "a.png" and png.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert save_figure(_figure(), tmp_path / "a.svg").read_text(encoding="utf-8").lstrip().startswith("<?xml")
    assert save_figure(_figure(), tmp_path / "a.pdf").read_bytes().startswith(b"%PDF")
    assert save_figure(_figure(), tmp_path / "noext").read_bytes().startswith(b"\x89PNG")
    assert len(plt.get_fignums()) == before
    with pytest.raises(ChatflowError, match=r"a\.xyz: cannot write a \.xyz figure \(choose one of: .*png"):
        save_figure(_figure(), tmp_path / "a.xyz")
    assert len(plt.get_fignums()) == before and not (tmp_path / "a.xyz").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.pdf", "a.svg", "noext", "sub"]   # no temporaries


def test_save_figure_leaves_an_existing_file_whole_when_drawing_fails(tmp_path):
    target = tmp_path / "keep.png"
    target.write_bytes(b"old")
    fig = _figure()
    fig.axes[0].set_title("$\\notacommand$")   # mathtext fails only when the figure is drawn
    with pytest.raises(ValueError):
        save_figure(fig, target)
    assert target.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["keep.png"]


def test_pyplot_without_matplotlib_names_the_extra(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "matplotlib", None)     # import matplotlib -> ImportError
    with pytest.raises(ChatflowError, match=r"plots need matplotlib: pip install 'chatflow-plugin\[plot\]'"):
        pyplot()
