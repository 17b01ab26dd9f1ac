"""Summaries of py-spy's collapsed stacks (``--format raw``): where the samples are.

    python -m bench._spike_profile FILE [FILE…] [--top 25]

Prints, per file, the functions holding the most samples inclusively (on the stack
at all) and by self time (the innermost frame), as shares of all samples.
"""

from __future__ import annotations

import argparse
import collections
from pathlib import Path


def summarise(path: Path, top: int) -> str:
    inclusive: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = stack.split(";")
        own[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
    lines = [f"### {path.name}: {total} samples", "", "| inclusive | function |", "|---:|---|"]
    lines += [f"| {n / total:.1%} | `{f}` |" for f, n in inclusive.most_common(top)]
    lines += ["", "| self | function |", "|---:|---|"]
    lines += [f"| {n / total:.1%} | `{f}` |" for f, n in own.most_common(top)]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    for path in args.files:
        print(summarise(path, args.top), end="\n\n")


if __name__ == "__main__":
    main()
