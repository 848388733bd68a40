"""The terminal view: lines about incidents and actions are rationed, and what is held back is counted."""

from __future__ import annotations

from engine.app.console import LineRation


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_storm_prints_the_ration_and_one_line_counting_the_rest_once_the_second_is_over() -> None:
    printed: list[str] = []
    clock = _Clock()
    ration = LineRation(printed.append, per_second=3, clock=clock)
    for n in range(5000):
        ration.line(f"opened {n}")
    assert printed == ["opened 0", "opened 1", "opened 2"]
    clock.now += 1.0
    ration.line("resolved 7")
    assert printed[3:] == [
        "[dim]… 4997 more lines not shown (the page and the API list every incident)[/]",
        "resolved 7",
    ]


def test_within_the_ration_every_line_is_printed_and_nothing_is_counted() -> None:
    printed: list[str] = []
    clock = _Clock()
    ration = LineRation(printed.append, per_second=3, clock=clock)
    for n in range(6):
        ration.line(f"line {n}")
        clock.now += 0.5
    ration.flush(final=True)
    assert printed == [f"line {n}" for n in range(6)]


def test_the_final_flush_says_what_the_last_second_held_back() -> None:
    printed: list[str] = []
    ration = LineRation(printed.append, per_second=1, clock=_Clock())
    ration.line("a")
    ration.line("b")
    ration.line("c")
    ration.flush(final=True)
    assert printed == ["a", "[dim]… 2 more lines not shown (the page and the API list every incident)[/]"]
