"""crowdselect.core.log: the tool's lines; piped output gets plain progress lines, never carriage returns."""

import time

from crowdselect.core import log


def test_piped_stage_prints_start_heartbeat_and_end(capsys, monkeypatch):
    monkeypatch.setattr(log, "PROGRESS_EVERY_S", 0.05)
    times = {}
    with log.stage("embed", times, rows=300):
        time.sleep(0.18)
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert lines[0] == "[crowdselect] embed ..." and lines[-1].startswith("[crowdselect] embed done in ")
    assert any(x.startswith("[crowdselect] embed: 300 rows, running ") for x in lines[1:-1])
    assert "\r" not in err and times["embed"] >= 0.18


def test_piped_bar_is_one_line_every_few_seconds_with_rate_and_eta(capsys, monkeypatch):
    monkeypatch.setattr(log, "PROGRESS_EVERY_S", 0.0)
    bar = log.bar(total=100, desc="generate a")
    assert isinstance(bar, log.LineProgress)  # capsys: stderr is not a terminal
    bar.update(25)
    bar.close()
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].startswith("[crowdselect] generate a: 25/100 rows, ") and " rows/s, ETA " in lines[0]
    assert len(lines) == 2


def test_a_disabled_bar_prints_nothing(capsys):
    bar = log.bar(total=10, desc="x", enabled=False)
    bar.update(10)
    bar.close()
    assert capsys.readouterr().err == ""
