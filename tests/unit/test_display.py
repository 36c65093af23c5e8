"""User text the tool prints or reports: control characters shown as escapes, long text clipped — in report.html,
FILE:LINE reasons, CLI errors and log lines (the selection summary: test_select_summary.py)."""

import json

from crowdselect import cli
from crowdselect.core import columns as C
from crowdselect.core import log
from crowdselect.core.text import DISPLAY_LIMIT

EVIL = "a\x1b[2J\x1b]0;pwned\x07b\rc\u202ed"
SHOWN = "a\\x1b[2J\\x1b]0;pwned\\x07b\\x0dc\\u202ed"


def test_report_html_examples_are_escaped_and_clipped(tmp_path):
    from crowdselect.report.html import selection_sections

    row = {C.ID: "r1", C.CLUSTER: 0, C.SCORE: 1.0, C.MODEL: "m\x1b[31m", C.INSTRUCTION: EVIL,
           C.RESPONSE: "z" * 60_000}
    (tmp_path / "selected.jsonl").write_text(json.dumps(row) + "\n")
    page = "".join(selection_sections(str(tmp_path)))
    assert not any(c in page for c in "\x1b\x07\r\u202e")
    assert SHOWN in page and "m\\x1b[31m" in page
    assert "z" * DISPLAY_LIMIT + f"… ({60_000 - DISPLAY_LIMIT:,} more characters)" in page
    assert "z" * (DISPLAY_LIMIT + 1) not in page


def test_bad_row_reasons_and_errors_reach_the_terminal_escaped(tmp_path, capsys):
    """A pool row without an instruction: the FILE:LINE reason lists the row's keys, one of them hostile."""
    pool = tmp_path / "pool.jsonl"
    pool.write_text(json.dumps({EVIL + "y" * 50_000: 1}) + "\n")
    run = tmp_path / "run.yaml"
    run.write_text(f"out: {tmp_path / 'o'}\npool: {{path: {pool}}}\ngenerators:\n"
                   "  - {name: a, family: f, size_b: 1, model: m1}\n  - {name: b, family: f, size_b: 2, model: m2}\n"
                   "rewards:\n  - {name: judge, model: j, kind: judge}\n")
    assert cli.main(["run", str(run)]) == 2
    err = capsys.readouterr().err
    assert "pool.jsonl:1: missing field 'instruction' (keys: " + SHOWN in err
    assert not any(c in err for c in "\x1b\x07\r\u202e") and len(err) < 3 * DISPLAY_LIMIT


def test_log_lines_escape_control_characters(capsys):
    log.say(f"pool: skipped {EVIL}")
    err = capsys.readouterr().err
    assert err == f"[crowdselect] pool: skipped {SHOWN}\n"
