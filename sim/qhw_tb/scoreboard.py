"""Bit-exact comparison of hardware outputs against a Python model."""

from __future__ import annotations

from collections import deque


class Scoreboard:
    """Compares each observed transfer with the next expected one, exactly.

    The first mismatch fails the test at once, naming the transfer index and
    both values, so a failing seed is easy to replay.
    """

    def __init__(self, name: str):
        self.name = name
        self.expected: deque = deque()
        self.matched = 0

    def expect(self, value) -> None:
        self.expected.append(value)

    def check(self, observed) -> None:
        if not self.expected:
            raise AssertionError(f"{self.name}: unexpected output #{self.matched}: {observed!r}")
        want = self.expected.popleft()
        if observed != want:
            raise AssertionError(
                f"{self.name}: output #{self.matched} mismatch: got {observed!r}, expected {want!r}"
            )
        self.matched += 1

    def assert_drained(self) -> None:
        if self.expected:
            raise AssertionError(f"{self.name}: {len(self.expected)} expected outputs never arrived")
