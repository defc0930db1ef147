"""An app's followed logs go on after a reconnect: no line twice, none lost (fast tier: the engine is a list).

The fake engine below answers as `docker logs --timestamps --since S` does: every line of a source from second S
on (inclusive), or with no `since` only lines printed from now on. The cursor (running/logcursor.py) must drop
what the reader had, including lines that share one stamp.
"""

from __future__ import annotations

import html
from collections.abc import Iterator
from urllib.parse import unquote

import pytest

from minipaas.dashboard import live
from minipaas.running import logcursor
from tests.helpers.dashboard import Home, home, logged_in  # noqa: F401 (the fixture)

S = 1_765_087_200_000_000_000  # 2025-12-07T06:00:00Z in ns


def test_a_stamp_is_read_with_its_nanoseconds_whatever_its_precision() -> None:
    assert logcursor.split_stamp(b"2025-12-07T06:00:00.000000001Z hello") == (S + 1, b"hello")
    assert logcursor.split_stamp(b"2025-12-07T06:00:00.5Z x y") == (S + 500_000_000, b"x y")
    assert logcursor.split_stamp(b"2025-12-07T07:00:00+01:00 z") == (S, b"z")
    assert logcursor.split_stamp(b"no stamp here") == (None, b"no stamp here")
    assert logcursor.split_stamp(b"2025-13-07T06:00:00Z bad month") == (None, b"2025-13-07T06:00:00Z bad month")


def test_a_cursor_round_trips_and_anything_else_is_an_empty_one() -> None:
    cursor = logcursor.Cursor(S, {"shop-web-1": (S + 5, 2), "abc123@node-1": (S + 9, 1)})
    again = logcursor.Cursor.parse(cursor.render())
    assert again.baseline == S and again.positions == cursor.positions
    for bad in ("", "x", "t12,web:1", "t12,we b:1.1", "t12,web:1.1,", "t" + "9" * 30, "t1," + "a:1.1," * 40,
                "t1,<script>:1.1", "t1,web:-1.1"):
        assert logcursor.Cursor.parse(bad).positions == {} and logcursor.Cursor.parse(bad).baseline in (0,), bad
    assert logcursor.Cursor(S).since("new") == S // 10**9 and logcursor.Cursor().since("new") is None
    assert cursor.since("shop-web-1") == S // 10**9 and cursor.oldest() == S // 10**9


class Engine:
    """Lines printed by sources, each (source, ns, text); read as the engine answers `--since`."""

    def __init__(self) -> None:
        self.printed: list[tuple[str, int, bytes]] = []
        self.asked: list[dict[str, int | None]] = []

    def stamped_logs(self, host: object, app: str, cursor: logcursor.Cursor, *, lines: int,
                     follow: bool) -> Iterator[tuple[str, int | None, bytes]]:
        sources = sorted({s for s, _, _ in self.printed})
        since = {s: cursor.since(s) for s in sources}
        self.asked.append(since)
        first = len(self.printed) - lines  # no `since`: the last `lines` lines (then what is printed from now on)
        for i, (source, ns, text) in enumerate(self.printed):
            start = since[source]
            if (start is None and i >= first) or (start is not None and ns // 10**9 >= start):
                yield source, ns, text


def events(stream: Iterator[bytes]) -> list[tuple[str, str]]:
    """(id, data) of each event with data."""
    out = []
    for event in b"".join(stream).decode().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in event.split("\n") if ": " in line)
        if "data" in fields and "event" not in fields:
            out.append((fields.get("id", ""), fields["data"]))
    return out


def test_a_reconnect_goes_on_after_the_last_line_even_within_one_stamp() -> None:
    engine = Engine()
    engine.printed = [("web-1", S + 1, b"one"), ("web-1", S + 2, b"two"), ("web-1", S + 2, b"two again"),
                      ("web-2", S + 3, b"other"), ("web-1", S + 2_000_000_000, b"later")]
    # The browser got three lines, the third the first of two sharing one stamp, then the connection dropped.
    cursor = logcursor.Cursor(S)
    first = events(live.stamped_sse(iter(list(engine.stamped_logs(None, "shop", cursor, lines=0, follow=True))[:3]),
                                    cursor))
    assert [d for _, d in first] == ["one", "two", "two again"]
    engine.printed += [("web-1", S + 2_000_000_000, b"same stamp as later"), ("web-3", S + 4, b"a new one")]
    resumed = logcursor.Cursor.parse(first[-1][0])  # what Last-Event-ID brings back
    rest = events(live.stamped_sse(engine.stamped_logs(None, "shop", resumed, lines=0, follow=True), resumed))
    assert [d for _, d in rest] == ["other", "later", "same stamp as later", "a new one"]
    # And once more from the end: nothing again.
    last = logcursor.Cursor.parse(rest[-1][0])
    assert events(live.stamped_sse(engine.stamped_logs(None, "shop", last, lines=0, follow=True), last)) == []
    # Lines older than the reader's start (the page showed them) are not sent.
    assert engine.asked[1]["web-3"] == S // 10**9


def test_the_stream_route_resumes_from_last_event_id_or_after(home: Home, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    engine = Engine()
    engine.printed = [("shop-web-1", S + i, f"line {i}".encode()) for i in range(5)]
    monkeypatch.setattr("minipaas.running.processes.stamped_logs", engine.stamped_logs)
    c, _ = logged_in(home, home.key("alice", "admin"))
    page = c.get("/apps/shop/logs").text
    assert "line 4" in page and "line 0" in page
    after = logcursor.Cursor.parse(unquote(html.unescape(page.split("logs/stream?after=", 1)[1].split('"', 1)[0])))
    assert after.positions == {"shop-web-1": (S + 4, 1)}  # the page's lines are not sent again
    engine.printed.append(("shop-web-1", S + 5, b"line 5"))
    got = events(iter([c.get(f"/apps/shop/logs/stream?after={after.render()}").content]))
    assert [d for _, d in got] == ["line 5"]
    engine.printed.append(("shop-web-1", S + 6, b"line 6"))
    again = events(iter([c.get("/apps/shop/logs/stream?after=t1", headers={"Last-Event-ID": got[0][0]}).content]))
    assert [d for _, d in again] == ["line 6"]  # the header wins over the URL's cursor
    junk = events(iter([c.get("/apps/shop/logs/stream", headers={"Last-Event-ID": "t1,<x>:1.1"}).content]))
    assert junk == []  # a forged id: followed from now on, as a new reader


def test_a_swarm_tasks_stamped_line_keeps_its_stamp_before_the_text() -> None:
    from minipaas.adapters.engine.services import _task_line

    line = b"2025-12-07T06:00:00.000000007Z com.docker.swarm.node.id=n1,com.docker.swarm.task.id=t9 hello there"
    task, text = _task_line(line)
    assert task == "t9" and logcursor.split_stamp(text) == (S + 7, b"hello there")
    assert _task_line(b"com.docker.swarm.task.id=t9 plain") == ("t9", b"plain")
