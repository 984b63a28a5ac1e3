"""Log formats: text keeps the classic line, kv and json carry fields as keys."""

from __future__ import annotations

import json
import logging

from imapproxy.observability.logformat import formatter


def _record(msg: str, **fields: object) -> logging.LogRecord:
    record = logging.LogRecord("imapproxy.test", logging.INFO, __file__, 1, msg, (), None)
    record.fields = fields
    return record


def test_json_lines_carry_fields_as_keys() -> None:
    line = formatter("json").format(_record("session end", user="alice", seconds=1.5))
    data = json.loads(line)
    assert data["msg"] == "session end"
    assert data["level"] == "info"
    assert data["user"] == "alice" and data["seconds"] == 1.5
    assert data["ts"].endswith("Z")


def test_key_value_lines_quote_what_needs_it() -> None:
    line = formatter("kv").format(_record('said "hi" there', peer="127.0.0.1:5"))
    assert 'msg="said \\"hi\\" there"' in line
    assert "peer=127.0.0.1:5" in line
    assert line.startswith("ts=")


def test_text_lines_keep_the_classic_shape() -> None:
    line = formatter("text").format(_record("login ok", user="bob"))
    assert " INFO imapproxy.test login ok user=bob" in line
