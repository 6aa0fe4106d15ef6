"""Checking a stream of :class:`qhw.net.stream.FrameFormat` frames against expected payloads.

Shared by the standalone engine testbench (``net/test_engines.py``) and the
whole-accelerator one (``net/test_accelerator.py``): a mismatch is reported
as one line naming the layer, frame, pixel ``(y, x)``, channel, expected and
got code, which :meth:`FrameFormat.locate` computes from the beat number.
"""

from __future__ import annotations

from typing import Sequence


def frame_format(doc: dict):
    """A :class:`~qhw.net.stream.FrameFormat` from its ``to_dict()``."""
    from qhw.net.stream import FrameFormat

    return FrameFormat(tuple(doc["shape"]), doc["code"], doc["bits"], doc["simd"])


def mismatch_message(layer: str, fmt, index: int, got: int, want: int) -> str:
    """One line: where beat ``index`` of ``layer``'s stream first differs, and how."""
    mask = (1 << fmt.bits) - 1
    for slot in range(fmt.simd):
        g, w = (got >> (slot * fmt.bits)) & mask, (want >> (slot * fmt.bits)) & mask
        if g != w:
            where = fmt.locate(index, slot)
            return (f"layer {layer}: frame {where['frame']}, pixel (y={where['y']}, x={where['x']}), "
                    f"channel {where['channel']}: expected code {w}, got {g} (beat {index})")
    return (f"layer {layer}: beat {index}: last flag expected {want >> fmt.data_width}, "
            f"got {got >> fmt.data_width}")


def differing_codes(fmt, got: int, want: int) -> int:
    """How many code slots (and the ``last`` flag, counted as one) differ between two payloads."""
    diff = got ^ want
    mask = (1 << fmt.bits) - 1
    n = sum(1 for slot in range(fmt.simd) if (diff >> (slot * fmt.bits)) & mask)
    return n + ((diff >> fmt.data_width) & 1)


class FrameChecker:
    """Compares each transfer of one stream with the next expected payload, exactly.

    Parameters
    ----------
    layer : str
        Named in every message.
    fmt : FrameFormat
        The stream's format (locates a beat's frame, pixel and channel).
    expected : sequence of int
        Every payload the stream must carry, in order.
    fail_fast : bool
        Raise ``AssertionError`` at the first mismatch (default); otherwise
        count mismatches and keep :attr:`first` (the earliest message) for
        the caller to raise, so a run can report how far an error spread.

    Attributes
    ----------
    seen : int
        Transfers checked.
    mismatched_beats, mismatched_codes : int
        Beats that differed, and code slots (plus ``last`` flags) that did.
    first : str or None
        The first mismatch message.
    """

    def __init__(self, layer: str, fmt, expected: Sequence[int], *, fail_fast: bool = True):
        self.layer, self.fmt, self.expected = layer, fmt, expected
        self.fail_fast = fail_fast
        self.seen = 0
        self.mismatched_beats = 0
        self.mismatched_codes = 0
        self.first: str | None = None

    def __call__(self, got: int) -> None:
        if self.seen >= len(self.expected):
            self._fail(f"layer {self.layer}: unexpected output beat #{self.seen} "
                       f"(only {len(self.expected)} expected)", 1)
            self.seen += 1
            return
        want = self.expected[self.seen]
        if got != want:
            self._fail(mismatch_message(self.layer, self.fmt, self.seen, got, want),
                       differing_codes(self.fmt, got, want))
        self.seen += 1

    def _fail(self, message: str, codes: int) -> None:
        if self.fail_fast:
            raise AssertionError(message)
        self.mismatched_beats += 1
        self.mismatched_codes += codes
        if self.first is None:
            self.first = message

    @property
    def done(self) -> bool:
        return self.seen >= len(self.expected)
