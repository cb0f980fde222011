"""Summarise a py-spy raw profile from ``bench/run.py --profile``: where the time goes.

    .venv/bin/python bench/profile.py bench/results/latest-logs/profile-connrate-*.txt

Prints the functions with the most samples on their own (self) and under them
(inclusive), for one thread (the event loop's, by default). Stacks cut at a
greenlet (SQLAlchemy's async bridge) have no caller above the cut; they are
counted as they are.
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path


def summarise(path: Path, thread: str, top: int, match: str) -> str:
    own: Counter[str] = Counter()
    under: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")
        if thread not in frames[0]:
            continue
        samples = int(count)
        total += samples
        own[frames[-1]] += samples
        for frame in set(frames[1:]):
            under[frame] += samples
    if not total:
        return f"{path}: no samples of a thread named like {thread!r}"
    lines = [f"{path}: {total} samples of {thread!r}", "", "self %   function"]
    lines += [f"{100 * n / total:6.1f}   {f}" for f, n in own.most_common(top) if match in f]
    lines += ["", "incl %   function"]
    lines += [f"{100 * n / total:6.1f}   {f}" for f, n in under.most_common() if match in f][:top]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("profiles", type=Path, nargs="+")
    parser.add_argument("--thread", default="MainThread", help="thread name to keep")
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--match", default="", help="only functions whose line contains this")
    args = parser.parse_args()
    for path in args.profiles:
        print(summarise(path, args.thread, args.top, args.match))


if __name__ == "__main__":
    main()
