"""The library's human output: the scan's progress bar on a terminal, the tables' columns."""

from __future__ import annotations

import argparse
import io

from cli.library import ProgressBar, render


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_on_a_terminal_and_silence_elsewhere():
    tty = Terminal()
    bar = ProgressBar(tty)
    bar.draw({"phase": "walking", "files_seen": 1234})
    bar.draw({"phase": "probing", "files_seen": 2000, "to_probe": 10, "probed": 5, "unchanged": 1990})
    bar.close()
    frames = tty.getvalue().split("\r")
    assert frames[1].startswith("scanning: 1234 files seen")
    assert frames[2].startswith("[" + "#" * 15 + "." * 15 + "] 5/10 probed · 2000 files seen, 1990 unchanged")
    assert frames[-1] == ""  # the line is wiped at the end
    pipe = io.StringIO()
    quiet = ProgressBar(pipe)
    quiet.draw({"phase": "probing", "to_probe": 1, "probed": 0})
    quiet.close()
    assert pipe.getvalue() == ""


def test_list_table_shows_where_each_item_is(capsys):
    items = [{"id": "i0123456789ab", "title": "Dark", "year": None, "season": 1, "episode": 1, "duration_s": 3125.0,
              "resolution": "1920x1080", "local": True, "holders": [{"host": "nas", "peer_id": "p1"}], "note": None},
             {"id": "Heat-c0ffee12", "title": "Heat", "year": 1995, "season": None, "episode": None,
              "duration_s": None, "resolution": None, "local": False,
              "holders": [{"host": None, "peer_id": "12D3KooWabcdefghijkl"}], "note": None,
              "watch": {"resumable": True, "progress": 0.42, "host": "tv"}}]
    render(argparse.Namespace(action="list"), items)
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["TITLE", "YEAR", "S/E", "DURATION", "VIDEO", "WHERE", "WATCHED", "ID", "NOTE"]
    assert out[1].split()[:6] == ["Dark", "-", "S01E01", "52:05", "1920x1080", "here,"]
    assert "here, nas" in out[1] and "12D3KooWabcd" in out[2]
    assert "▶ 42% (tv)" in out[2] and "▶" not in out[1]  # continue watching, where it was left
