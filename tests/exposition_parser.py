"""A strict reader of the Prometheus text exposition format (0.0.4), for tests.

Written from the format's description, independently of ``herald.exposition``: it
refuses a sample without a ``# TYPE`` before it, a family declared twice, a bad
escape in a label value, a histogram whose buckets are not cumulative or do not end
at ``le="+Inf"`` equal to its ``_count``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_HELP = re.compile(rf"# HELP ({_NAME}) (.*)")
_TYPE = re.compile(rf"# TYPE ({_NAME}) (counter|gauge|histogram|summary|untyped)")
_SAMPLE_NAME = re.compile(rf"({_NAME})")
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")

Labels = tuple[tuple[str, str], ...]


class ExpositionError(ValueError):
    pass


@dataclass
class Family:
    name: str
    type: str
    help: str = ""
    samples: list[tuple[str, dict[str, str], float]] = field(default_factory=list)

    def value(self, **labels: str) -> float:
        """The one sample (not a histogram's) with exactly these labels."""
        found = [v for name, got, v in self.samples if name == self.name and got == labels]
        if len(found) != 1:
            raise KeyError(f"{self.name}{labels}: {len(found)} samples")
        return found[0]

    def labelled(self, suffix: str = "") -> list[tuple[dict[str, str], float]]:
        return [(labels, v) for name, labels, v in self.samples if name == self.name + suffix]

    def buckets(self, **labels: str) -> list[tuple[float, float]]:
        """A histogram's ``(le, cumulative count)`` for these labels, in order."""
        out = []
        for name, got, value in self.samples:
            if name == self.name + "_bucket":
                rest = {k: v for k, v in got.items() if k != "le"}
                if rest == labels:
                    out.append((_number(got["le"]), value))
        return out


def _number(text: str) -> float:
    if text in ("+Inf", "Inf"):
        return math.inf
    if text == "-Inf":
        return -math.inf
    if text == "NaN":
        return math.nan
    return float(text)


def _unescape_help(text: str) -> str:
    out, i = [], 0
    while i < len(text):
        if text[i] == "\\" and i + 1 < len(text) and text[i + 1] in "\\n":
            out.append("\n" if text[i + 1] == "n" else "\\")
            i += 2
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def _labels(line: str, start: int) -> tuple[dict[str, str], int]:
    """Parse ``{a="x",b="y"}`` from ``line[start]``; returns labels and the index after."""
    labels: dict[str, str] = {}
    i = start + 1
    while True:
        if line[i] == "}":
            return labels, i + 1
        match = _LABEL_NAME.match(line, i)
        if match is None:
            raise ExpositionError(f"bad label name at {i}: {line!r}")
        name = match.group(0)
        i = match.end()
        if line[i : i + 2] != '="':
            raise ExpositionError(f'expected =" at {i}: {line!r}')
        i += 2
        value = []
        while line[i] != '"':
            if line[i] == "\\":
                escaped = line[i + 1]
                if escaped not in '\\"n':
                    raise ExpositionError(f"bad escape \\{escaped}: {line!r}")
                value.append("\n" if escaped == "n" else escaped)
                i += 2
            elif line[i] == "\n":
                raise ExpositionError("raw newline in a label value")
            else:
                value.append(line[i])
                i += 1
        i += 1
        if name in labels:
            raise ExpositionError(f"label {name} twice: {line!r}")
        labels[name] = "".join(value)
        if line[i] == ",":
            i += 1
        elif line[i] != "}":
            raise ExpositionError(f"expected , or }} at {i}: {line!r}")


def _family_of(name: str, families: dict[str, Family]) -> Family:
    if name in families:
        return families[name]
    for suffix in ("_bucket", "_sum", "_count"):
        base = name.removesuffix(suffix)
        if base != name and base in families and families[base].type == "histogram":
            return families[base]
    raise ExpositionError(f"sample {name} has no # TYPE before it")


def parse(text: str) -> dict[str, Family]:
    """Every family of an exposition, checked."""
    if not text.endswith("\n"):
        raise ExpositionError("the exposition must end with a newline")
    families: dict[str, Family] = {}
    helps: dict[str, str] = {}
    for line in text.splitlines():
        if not line:
            continue
        if line.startswith("# HELP "):
            match = _HELP.fullmatch(line)
            if match is None:
                raise ExpositionError(f"bad HELP: {line!r}")
            if match.group(1) in helps:
                raise ExpositionError(f"HELP twice for {match.group(1)}")
            helps[match.group(1)] = _unescape_help(match.group(2))
            continue
        if line.startswith("# TYPE "):
            match = _TYPE.fullmatch(line)
            if match is None:
                raise ExpositionError(f"bad TYPE: {line!r}")
            name = match.group(1)
            if name in families:
                raise ExpositionError(f"TYPE twice for {name}")
            families[name] = Family(name, match.group(2), helps.get(name, ""))
            continue
        if line.startswith("#"):
            continue
        match = _SAMPLE_NAME.match(line)
        if match is None:
            raise ExpositionError(f"bad sample: {line!r}")
        name, i = match.group(1), match.end()
        labels: dict[str, str] = {}
        if i < len(line) and line[i] == "{":
            labels, i = _labels(line, i)
        if line[i] != " ":
            raise ExpositionError(f"expected a space before the value: {line!r}")
        value = _number(line[i + 1 :].split(" ")[0])
        family = _family_of(name, families)
        if family.type == "counter" and not name.endswith("_total"):
            raise ExpositionError(f"counter sample {name} does not end in _total")
        family.samples.append((name, labels, value))
    for family in families.values():
        if family.type == "histogram":
            _check_histogram(family)
    return families


def _check_histogram(family: Family) -> None:
    series: dict[Labels, list[tuple[float, float]]] = {}
    for name, labels, value in family.samples:
        if name == family.name + "_bucket":
            rest = tuple(sorted((k, v) for k, v in labels.items() if k != "le"))
            series.setdefault(rest, []).append((_number(labels["le"]), value))
    for labels, buckets in series.items():
        bounds = [bound for bound, _ in buckets]
        counts = [count for _, count in buckets]
        if bounds != sorted(bounds) or bounds[-1] != math.inf:
            raise ExpositionError(f"{family.name}{labels}: buckets must rise to +Inf")
        if counts != sorted(counts):
            raise ExpositionError(f"{family.name}{labels}: buckets are not cumulative")
        count = family.labelled("_count")
        total = [v for got, v in count if tuple(sorted(got.items())) == labels]
        if total != [counts[-1]]:
            raise ExpositionError(f"{family.name}{labels}: _count is not the +Inf bucket")
        if not any(tuple(sorted(got.items())) == labels for got, _ in family.labelled("_sum")):
            raise ExpositionError(f"{family.name}{labels}: no _sum")
