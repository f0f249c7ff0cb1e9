"""The demo's environment settings: a bad value is a one-line error with exit 2."""

from __future__ import annotations

import pytest

from tools.demo.services import env_number


def test_unset_or_blank_gives_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DEMO_NODES", raising=False)
    assert env_number("DEMO_NODES", 3, 1, 3) == 3
    monkeypatch.setenv("DEMO_NODES", " ")
    assert env_number("DEMO_NODES", 3, 1, 3) == 3
    monkeypatch.setenv("DEMO_NODES", "1")
    assert env_number("DEMO_NODES", 3, 1, 3) == 1


@pytest.mark.parametrize("text", ["three", "1.5", "0", "4"])
def test_a_bad_value_names_the_variable_and_the_range(
    text: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DEMO_NODES", text)
    with pytest.raises(SystemExit) as stopped:
        env_number("DEMO_NODES", 3, 1, 3)
    assert stopped.value.code == 2
    assert capsys.readouterr().err == (
        f"error: DEMO_NODES={text!r} is not a whole number from 1 to 3; "
        "unset it for the default (3)\n"
    )
