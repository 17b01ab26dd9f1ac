"""What a flash may carry: bad levels, off-site links and silly timings are refused
before anything is stored."""

from __future__ import annotations

import pytest

from herald.flash import Flash


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"text": ""}, "1 to 2000"),
        ({"text": "x" * 2001}, "1 to 2000"),
        ({"text": "hi", "level": "shout"}, "level must be"),
        ({"text": "hi", "link": "https://evil.test/"}, "not a local path"),
        ({"text": "hi", "link": "//evil.test/"}, "not a local path"),
        ({"text": "hi", "button": ("Go", "javascript:alert(1)")}, "not a local path"),
        ({"text": "hi", "autohide": 0}, "autohide"),
        ({"text": "hi", "autohide": 3600}, "autohide"),
    ],
)
def test_bad_flashes_are_refused(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Flash(**fields)  # type: ignore[arg-type]


def test_options_say_how_it_is_shown() -> None:
    flash = Flash("Marks are out", button=("See them", "/assignments/1"), modal=True, autohide=5)
    assert flash.options() == {
        "modal": True,
        "autohide": 5,
        "button": {"label": "See them", "url": "/assignments/1"},
    }
