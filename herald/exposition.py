"""The Prometheus text exposition format (version 0.0.4), rendered by hand.

Herald's metrics are not in-process state but numbers in Redis and the database,
read when scraped (``web.metrics``), so all this needs is the format itself:
``# HELP`` and ``# TYPE`` once per family, label values escaped (backslash,
double quote, newline), help text escaped (backslash, newline), values as Go
prints floats (``+Inf``, ``NaN``), histograms as cumulative ``_bucket`` series
ending at ``le="+Inf"`` with ``_sum`` and ``_count``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

__all__ = ["CONTENT_TYPE", "Family", "format_value", "render"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")

Labels = Mapping[str, str]
Kind = Literal["counter", "gauge", "histogram"]


@dataclass
class Family:
    """One metric family: its name (a counter's ends in ``_total``), type, help, and
    samples ``(labels, value)``; a histogram's are ``(labels, cumulative buckets
    [(bound, count)…, (inf, count)], sum)``."""

    name: str
    kind: Kind
    help: str
    samples: list[tuple[Labels, float]] = field(default_factory=list)
    histograms: list[tuple[Labels, Sequence[tuple[float, int]], float]] = field(
        default_factory=list
    )

    def __post_init__(self) -> None:
        if not _NAME.fullmatch(self.name):
            raise ValueError(f"{self.name!r} is not a metric name")
        if self.kind == "counter" and not self.name.endswith("_total"):
            raise ValueError(f"counter {self.name!r} must end in _total")

    def add(self, value: float, **labels: str) -> None:
        self.samples.append((labels, value))

    def add_histogram(
        self, buckets: Sequence[tuple[float, int]], total: float, **labels: str
    ) -> None:
        if not buckets or buckets[-1][0] != math.inf:
            raise ValueError("a histogram's buckets end with +Inf")
        self.histograms.append((labels, buckets, total))


def format_value(value: float) -> str:
    """A sample value or ``le`` bound as Prometheus writes it."""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(labels: Labels, extra: tuple[str, str] | None = None) -> str:
    pairs = [*labels.items(), *([extra] if extra else [])]
    if not pairs:
        return ""
    for name, _ in pairs:
        if not _LABEL.fullmatch(name) or name.startswith("__"):
            raise ValueError(f"{name!r} is not a label name")
    return "{" + ",".join(f'{name}="{_escape_label(str(v))}"' for name, v in pairs) + "}"


def _family_lines(family: Family) -> Iterable[str]:
    yield f"# HELP {family.name} {_escape_help(family.help)}"
    yield f"# TYPE {family.name} {family.kind}"
    for labels, value in family.samples:
        yield f"{family.name}{_labels(labels)} {format_value(value)}"
    for labels, buckets, total in family.histograms:
        for bound, count in buckets:
            yield f"{family.name}_bucket{_labels(labels, ('le', format_value(bound)))} {count}"
        yield f"{family.name}_sum{_labels(labels)} {format_value(float(total))}"
        yield f"{family.name}_count{_labels(labels)} {buckets[-1][1]}"


def render(families: Iterable[Family]) -> str:
    """The exposition text of ``families`` (names must be unique), newline-terminated."""
    seen: set[str] = set()
    lines: list[str] = []
    for family in families:
        if family.name in seen:
            raise ValueError(f"metric family {family.name!r} rendered twice")
        seen.add(family.name)
        lines.extend(_family_lines(family))
    return "\n".join(lines) + "\n"
