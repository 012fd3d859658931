"""Summarizes a py-spy collapsed-stack profile (`py-spy record --format raw`): the share of
samples in which each function is on the stack (inclusive) and at its top (self).

    py-spy record --pid PID --duration 10 --rate 250 --format raw --output server.txt
    python serving/bench/flame_summary.py server.txt [--top 25]
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path


def summarize(lines: list[str]) -> tuple[int, Counter, Counter]:
    """Total samples, and samples per frame inclusive and self."""
    total, inclusive, self_ = 0, Counter(), Counter()
    for line in lines:
        stack, _, count = line.rstrip().rpartition(" ")
        if not stack:
            continue
        samples = int(count)
        frames = stack.split(";")
        total += samples
        for frame in set(frames):
            inclusive[frame] += samples
        self_[frames[-1]] += samples
    return total, inclusive, self_


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("profile", type=Path)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    total, inclusive, self_ = summarize(args.profile.read_text().splitlines())
    print(f"{total} samples")
    print("| inclusive | self | frame |\n|---:|---:|---|")
    for frame, samples in inclusive.most_common(args.top):
        print(f"| {100 * samples / total:.1f} % | {100 * self_[frame] / total:.1f} % | `{frame}` |")


if __name__ == "__main__":
    main()
