"""How a weight matrix maps onto a ``rows × cols`` array of ``lanes``-wide PEs.

Let ``C × K`` be the weight matrix (out-channels × in-features),
``B = rows · lanes`` the in-features consumed per cycle, ``SF = ceil(K / B)``
the synapse fold and ``NF = ceil(C / cols)`` the neuron fold.

* In-features: feature ``k = sf·B + r·lanes + l`` goes to lane ``l`` of row
  ``r`` at fold step ``sf``. Features ``k >= K`` are padding: the array
  forces their activation code to 0 and stores the weight ``spec.pad_code()``,
  so they contribute nothing.
* Out-channels: channel ``ch = nf·cols + c`` is column ``c`` in neuron group
  ``nf``. Channels ``ch >= C`` (last group only) are padding: they compute
  the dot product of the pad weights (0, or +1 where the encoding has no 0)
  and are to be ignored.
* Input stream: one beat = ``B`` activation codes (beat feature ``j`` at bits
  ``[j·act_bits, (j+1)·act_bits)``). A vector is ``SF`` beats; it is sent ``NF``
  times in a row, once per neuron group: beat order ``(vector, nf, sf)``.
  :meth:`ArrayMapping.vectors_to_beats` builds this stream.
* Output stream: one beat = ``cols`` accumulators per (vector, nf), column
  ``c`` = channel ``nf·cols + c``. :meth:`ArrayMapping.outputs_to_channels`
  undoes it.
* PE ``(r, c)`` holds ``NF·SF`` ROM words, word ``nf·SF + sf``. MAC
  weights in a ROM (``steps > 1``) are stored Booth-recoded (``booth``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from qhw.ir import intmath
from qhw.ir.intmath import PEKind, signed_width

from ..pe.params import check_int_array, check_positive
from ..pe.spec import PESpec


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


@dataclass(frozen=True, eq=False)
class ArrayMapping:
    """Validated mapping of integer ``weights`` (C × K) onto the array.

    Parameters
    ----------
    weights : array-like of int, shape (out_channels, in_features)
        Integer weight *values* (not codes), representable in ``spec``.
    rows, cols : int
        Array shape, at least 1 each.
    spec : PESpec
        PE arithmetic, including ``lanes``.
    """

    weights: np.ndarray
    rows: int
    cols: int
    spec: PESpec
    # Derived (computed in __post_init__).
    raw: np.ndarray = field(init=False, repr=False)

    def __post_init__(self):
        if not isinstance(self.spec, PESpec):
            raise TypeError(f"spec must be a PESpec, not {self.spec!r}")
        w = check_int_array("weights", self.weights, 2)
        rows, cols = check_positive("rows", self.rows), check_positive("cols", self.cols)
        spec = self.spec
        codes = spec.encode(w)
        w.setflags(write=False)
        C, K = w.shape
        B = rows * spec.lanes
        SF, NF = _ceil_div(K, B), _ceil_div(C, cols)
        raw = np.full((NF * cols, SF * B), spec.pad_code(), dtype=np.int64)
        raw[:C, :K] = codes
        raw.setflags(write=False)
        for name, value in [("weights", w), ("rows", rows), ("cols", cols), ("raw", raw),
                            ("out_channels", C), ("in_features", K), ("beat_features", B),
                            ("sf", SF), ("nf", NF), ("steps", NF * SF)]:
            object.__setattr__(self, name, value)
        # Constant weights fold into the logic; ROM weights multiply by Booth muxes.
        booth = spec.kind is PEKind.MAC and self.steps > 1
        object.__setattr__(self, "booth", booth)
        object.__setattr__(self, "lane_word_bits", spec.rom_lane_bits(booth))
        self._derive_bounds()

    # -- bounds ------------------------------------------------------------------

    def _derive_bounds(self):
        spec, K, B = self.spec, self.in_features, self.beat_features
        real = np.arange(self.sf * B) < K
        tlo, thi = spec.term_range(self.raw)
        off = spec.booth_offset(self.raw) if self.booth else np.zeros_like(self.raw)
        off = np.where(real, off, 0)
        tlo, thi = np.where(real, tlo - off, 0), np.where(real, thi - off, 0)
        shape = (self.nf, self.cols, self.sf, self.rows, spec.lanes)
        row_lo = tlo.reshape(shape).sum(axis=4).cumsum(axis=3)  # psum below row r
        row_hi = thi.reshape(shape).sum(axis=4).cumsum(axis=3)
        # PE (r, c) partial sums over every (nf, sf) its ROM steps through.
        object.__setattr__(self, "psum_bounds", tuple(
            tuple((int(row_lo[:, c, :, r].min()), int(row_hi[:, c, :, r].max())) for c in range(self.cols))
            for r in range(self.rows)))
        # Column accumulators hold prefixes over sf of the column sums.
        step_lo, step_hi = row_lo[..., -1].cumsum(axis=2), row_hi[..., -1].cumsum(axis=2)
        object.__setattr__(self, "p_bounds", tuple(
            (int(step_lo[:, c].min()), int(step_hi[:, c].max())) for c in range(self.cols)))
        alo, ahi = spec.act_range
        object.__setattr__(self, "q_bounds", (min(0, K * alo), max(0, K * ahi)))
        gam = [[spec.gamma(self.raw[nf * self.cols + c, :K], K) + spec.alpha * int(off[nf * self.cols + c].sum())
                for c in range(self.cols)] for nf in range(self.nf)]
        object.__setattr__(self, "gamma", tuple(tuple(g) for g in gam))
        lo, hi = intmath.accumulator_bounds(self.values()[:, :K], alo, ahi)
        object.__setattr__(self, "channel_bounds", (lo, hi))
        # Only real channels size the output: a padded channel (pad weights
        # may be +1) can exceed them, and wraps; its value is don't-care.
        C = self.out_channels
        object.__setattr__(self, "acc_width", signed_width(int(lo[:C].min()), int(hi[:C].max())))

    def values(self) -> np.ndarray:
        """Decoded weights of every (padded) channel and feature, (NF·cols, SF·B)."""
        return intmath.decode_weights(self.spec.weight_code, self.spec.weight_bits, self.raw)

    # -- ROM contents ------------------------------------------------------------

    def rom_words(self, r: int, c: int) -> tuple[int, ...]:
        """ROM of PE (r, c): word ``nf·SF + sf``, lane ``l`` at bits ``l·lane_word_bits``.

        A lane holds the raw weight code, or its Booth code if ``booth``.
        """
        spec, B, bits = self.spec, self.beat_features, self.lane_word_bits
        codes = self._rom_codes
        words = []
        for nf in range(self.nf):
            for sf in range(self.sf):
                lanes = codes[nf * self.cols + c, sf * B + r * spec.lanes:sf * B + (r + 1) * spec.lanes]
                words.append(sum(int(x) << (l * bits) for l, x in enumerate(lanes)))
        return tuple(words)

    @cached_property
    def _rom_codes(self) -> np.ndarray:
        """What every ROM lane stores: the raw code, or its Booth code (computed once, not per PE)."""
        return self.spec.booth_codes(self.raw) if self.booth else self.raw

    def max_exps(self, r: int, c: int) -> tuple[int, ...]:
        """Largest pow2 exponent code per lane in PE (r, c)'s ROM."""
        spec, B = self.spec, self.beat_features
        e = self.raw & ((1 << max(spec.weight_bits - 1, 0)) - 1)
        cols = [sf * B + r * spec.lanes for sf in range(self.sf)]
        lanes = np.stack([e[c::self.cols, k:k + spec.lanes] for k in cols])  # (sf, nf, lanes)
        return tuple(int(x) for x in lanes.reshape(-1, spec.lanes).max(axis=0))

    def pad_lanes(self) -> tuple[int, ...]:
        """Beat features that are padding in the last fold step (sf = SF − 1)."""
        base = (self.sf - 1) * self.beat_features
        return tuple(j for j in range(self.beat_features) if base + j >= self.in_features)

    # -- stream formats and the reference model ----------------------------------

    def vectors_to_beats(self, vectors) -> np.ndarray:
        """Input beats for ``(n, K)`` activation codes: ``(n·NF·SF, B)``, padded with 0."""
        x = np.asarray(vectors, dtype=np.int64).reshape(-1, self.in_features)
        padded = np.zeros((len(x), self.sf * self.beat_features), dtype=np.int64)
        padded[:, :self.in_features] = x
        beats = padded.reshape(len(x), 1, self.sf, self.beat_features)
        return np.broadcast_to(beats, (len(x), self.nf, self.sf, self.beat_features)).reshape(
            -1, self.beat_features).copy()

    def outputs_to_channels(self, outputs) -> np.ndarray:
        """``(n·NF, cols)`` output beats -> ``(n, C)`` channel values."""
        y = np.asarray(outputs, dtype=np.int64).reshape(-1, self.nf * self.cols)
        return y[:, :self.out_channels]

    def reference(self, beats) -> np.ndarray:
        """Exactly what the array emits for input ``beats`` (n, B): ``(n // SF, cols)``.

        Every ``SF`` consecutive beats form one (vector, nf) group, nf
        counting 0..NF−1 cyclically; padded features are ignored whatever
        their codes. Values come from intmath decoding alone; padded output
        channels wrap to ``acc_width`` bits as in hardware (real ones fit).
        """
        spec = self.spec
        b = np.asarray(beats, dtype=np.int64).reshape(-1, self.beat_features)
        if b.size and (b.min() < 0 or b.max() > spec.code_max):
            raise ValueError(f"beats: activation codes must be within [0, {spec.code_max}]")
        groups = len(b) // self.sf
        x = b[:groups * self.sf].reshape(groups, -1)[:, :self.in_features]
        a = intmath.decode_acts(spec.act_code, spec.act_bits, x)
        w = self.values()[:, :self.in_features].reshape(self.nf, self.cols, -1)
        nf = np.arange(groups) % self.nf
        y = np.einsum("gck,gk->gc", w[nf], a)
        half = 1 << (self.acc_width - 1)
        return (y + half) % (2 * half) - half
