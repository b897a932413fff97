"""Lines taken from the spool together, and the numbers that give them back to it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Batch:
    """Spooled lines, oldest first: `runs` are (first number, count), `lines` their lines.

    Kept as runs of numbers beside a flat list of lines (no pair per line): a batch of 5,000
    lines is a few dozen runs, so taking, splitting and acknowledging it costs per chunk.
    """

    runs: tuple[tuple[int, int], ...] = ()
    lines: Sequence[str] = ()
    size: int = 0  # bytes, a newline counted after each line

    def __len__(self) -> int:
        return len(self.lines)

    def split(self, at: int) -> tuple[Batch, Batch]:
        """The first `at` lines and the rest."""
        head: list[tuple[int, int]] = []
        tail: list[tuple[int, int]] = []
        seen = 0
        for seq, n in self.runs:
            if seen + n <= at:
                head.append((seq, n))
            elif seen >= at:
                tail.append((seq, n))
            else:
                head.append((seq, at - seen))
                tail.append((seq + at - seen, n - (at - seen)))
            seen += n
        first, rest = self.lines[:at], self.lines[at:]
        return Batch(tuple(head), first, _bytes(first)), Batch(tuple(tail), rest, _bytes(rest))

    def ranges(self) -> list[tuple[int, int]]:
        """The numbers as half-open ranges [a, b), runs that meet joined."""
        out: list[tuple[int, int]] = []
        for seq, n in self.runs:
            if out and out[-1][1] == seq:
                out[-1] = (out[-1][0], seq + n)
            else:
                out.append((seq, seq + n))
        return out

    def pairs(self) -> list[tuple[int, str]]:
        """(number, line) for each line."""
        numbers = [seq + i for seq, n in self.runs for i in range(n)]
        return list(zip(numbers, self.lines, strict=True))


def ranges(seqs: Sequence[int]) -> list[tuple[int, int]]:
    """Line numbers as half-open ranges [a, b), fewest first: one for a batch `peek` gave."""
    if not seqs:
        return []
    first = seqs[0]
    if seqs[-1] - first + 1 == len(seqs) and list(seqs) == list(range(first, first + len(seqs))):
        return [(first, first + len(seqs))]
    out: list[tuple[int, int]] = []
    for seq in sorted(set(seqs)):
        if out and out[-1][1] == seq:
            out[-1] = (out[-1][0], seq + 1)
        else:
            out.append((seq, seq + 1))
    return out


def _bytes(lines: Sequence[str]) -> int:
    return sum(map(len, lines)) + len(lines)
