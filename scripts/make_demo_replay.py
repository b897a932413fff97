"""Regenerate src/followerwatch/data/april2009.csv: an ILLUSTRATIVE replay, not historical data.

The shape follows the story (a race to 1,000,000 won by @aplusk hours before @cnnbrk on 17 April
2009, then an "Unfollow Day" pulling @aplusk back under), but every number is invented.
"""

import csv
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

START = datetime(2009, 4, 14, tzinfo=UTC)
HOURS = 15 * 24
KNOTS = {  # hour offset → followers, linearly interpolated
    "aplusk": [(0, 931_000), (48, 968_000), (72, 990_500), (78, 1_000_400), (96, 1_012_000),
               (300, 1_026_000), (312, 1_024_500), (336, 991_200), (359, 993_400)],
    "cnnbrk": [(0, 942_000), (48, 972_000), (72, 993_000), (80, 1_000_700), (96, 1_009_000),
               (359, 1_041_000)],
}


def value(knots: list[tuple[int, int]], hour: int) -> float:
    for (h0, v0), (h1, v1) in zip(knots, knots[1:], strict=False):
        if h0 <= hour <= h1:
            return v0 + (v1 - v0) * (hour - h0) / (h1 - h0)
    return knots[-1][1]


def main() -> None:
    rng = random.Random(2009)
    out = Path(__file__).resolve().parents[1] / "src/followerwatch/data/april2009.csv"
    with out.open("w", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(["timestamp", "platform", "account", "followers"])
        for hour in range(HOURS):
            when = (START + timedelta(hours=hour)).isoformat().replace("+00:00", "Z")
            for account, knots in KNOTS.items():
                writer.writerow([when, "x", account, round(value(knots, hour) + rng.gauss(0, 150))])


if __name__ == "__main__":
    main()
