"""The stream format between layer engines.

One format for every edge of the network, so that any engine can feed any
other once the channel grouping (``simd``) agrees:

* **Order**: raster order of pixels (row ``y`` then column ``x``); the
  channels of one pixel in ``groups = ceil(C / simd)`` consecutive beats,
  beat ``g`` holding channels ``g·simd … g·simd + simd − 1``. A vector
  (``(C,)``, e.g. a dense layer's input) is one pixel.
* **Payload**: flat, ``simd·bits + 1`` bits. Slot ``j`` (channel
  ``g·simd + j``) sits at bits ``[j·bits, (j+1)·bits)`` as the raw code of
  its IR encoding (:func:`qhw.ir.intmath.encode_acts`: unsigned code,
  bipolar bit, two's complement). Slots past ``C`` in the last group are
  code 0. The top bit (``last``, bit ``simd·bits``) is set on the final
  beat of a frame and only there.
* **Frame**: ``H·W·groups`` beats.

Inside an engine, blocks pass the data part only (no ``last``): the
systolic array, the requantizer and the window generator's output know
their place in the frame from their own counters. The engine's output
stage sets ``last`` from its counters too; engines do not trust an
input's ``last`` for control.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from qhw.ir import intmath
from qhw.ir.graph import TensorSpec
from qhw.ir.intmath import ActCode, check_bits

from ..hw.pe.params import check_positive


@dataclass(frozen=True)
class FrameFormat:
    """Shape, encoding and channel grouping of one engine-to-engine stream.

    Parameters
    ----------
    shape : (C, H, W) or (C,)
        Tensor shape without batch; a vector is one pixel.
    code : ActCode
        IR encoding of every code.
    bits : int
        Code width (1 for bipolar, up to 63 for signed).
    simd : int
        Channels per beat, at least 1 (larger than ``C`` is allowed: slots
        past ``C`` are 0).

    Attributes
    ----------
    channels, height, width : int
        ``height = width = 1`` for a vector.
    groups : int
        Beats per pixel, ``ceil(C / simd)``.
    pixels, beats : int
        Pixels and beats per frame.
    data_width : int
        ``simd · bits``; the ``last`` flag is bit ``data_width``.
    payload_width : int
        ``data_width + 1``.
    """

    shape: tuple[int, ...]
    code: ActCode
    bits: int
    simd: int

    def __post_init__(self):
        shape = tuple(self.shape) if isinstance(self.shape, (tuple, list)) else None
        if shape is None or len(shape) not in (1, 3):
            raise ValueError(f"shape must be (C, H, W) or (C,), not {self.shape!r}")
        object.__setattr__(self, "shape", tuple(check_positive("shape", d) for d in shape))
        object.__setattr__(self, "code", ActCode(self.code))
        object.__setattr__(self, "bits", check_bits("bits", self.bits, 1, intmath.MAX_SIGNED_BITS))
        intmath.act_value_range(self.code, self.bits)  # rejects e.g. 2-bit bipolar
        object.__setattr__(self, "simd", check_positive("simd", self.simd))

    @classmethod
    def of(cls, spec: TensorSpec, simd: int) -> "FrameFormat":
        """The format carrying tensors of ``spec`` in beats of ``simd`` channels."""
        return cls(spec.shape, spec.code, spec.bits, simd)

    def with_simd(self, simd: int) -> "FrameFormat":
        return FrameFormat(self.shape, self.code, self.bits, simd)

    # -- sizes ----------------------------------------------------------------------

    @property
    def channels(self) -> int:
        return self.shape[0]

    @property
    def height(self) -> int:
        return self.shape[1] if len(self.shape) == 3 else 1

    @property
    def width(self) -> int:
        return self.shape[2] if len(self.shape) == 3 else 1

    @property
    def is_map(self) -> bool:
        return len(self.shape) == 3

    @property
    def groups(self) -> int:
        return -(-self.channels // self.simd)

    @property
    def pixels(self) -> int:
        return self.height * self.width

    @property
    def beats(self) -> int:
        return self.pixels * self.groups

    @property
    def data_width(self) -> int:
        return self.simd * self.bits

    @property
    def payload_width(self) -> int:
        return self.data_width + 1

    def to_dict(self) -> dict:
        return {"shape": list(self.shape), "code": self.code.value, "bits": self.bits, "simd": self.simd}

    # -- values <-> beats -----------------------------------------------------------

    def codes(self, values) -> np.ndarray:
        """Values ``(N, *shape)`` -> raw codes ``(N, pixels, groups, simd)``, padding slots 0."""
        v = np.asarray(values, dtype=np.int64)
        if v.shape[1:] != self.shape:
            raise ValueError(f"values must have shape (N, {', '.join(map(str, self.shape))}), not {v.shape}")
        raw = intmath.encode_acts(self.code, self.bits, v).reshape(len(v), self.channels, self.pixels)
        out = np.zeros((len(v), self.pixels, self.groups * self.simd), dtype=np.int64)
        out[:, :, :self.channels] = raw.transpose(0, 2, 1)
        return out.reshape(len(v), self.pixels, self.groups, self.simd)

    def pack(self, codes, *, last: bool = True) -> list[int]:
        """Raw codes ``(N, pixels, groups, simd)`` -> payload integers, ``last`` on each frame's end."""
        c = np.asarray(codes, dtype=np.int64).reshape(-1, self.beats, self.simd)
        payloads = []
        for frame in c:
            for k, beat in enumerate(frame):
                word = 0
                for j, code in enumerate(beat.tolist()):
                    word |= int(code) << (j * self.bits)
                if last and k == self.beats - 1:
                    word |= 1 << self.data_width
                payloads.append(word)
        return payloads

    def encode(self, values) -> list[int]:
        """Values ``(N, *shape)`` -> the stream's payloads (Python ints, any width)."""
        return self.pack(self.codes(values))

    def decode(self, payloads, *, check_last: bool = True) -> np.ndarray:
        """Payloads of whole frames -> values ``(N, *shape)``.

        Raises ValueError naming frame, pixel and channel if a padding slot is
        not 0 or (``check_last``) the ``last`` flag is not exactly on the
        final beat of every frame.
        """
        payloads = [int(p) for p in payloads]
        if len(payloads) % self.beats:
            raise ValueError(f"{len(payloads)} beats are not a whole number of {self.beats}-beat frames")
        mask = (1 << self.bits) - 1
        n = len(payloads) // self.beats
        raw = np.zeros((n, self.pixels, self.groups * self.simd), dtype=np.int64)
        for i, word in enumerate(payloads):
            f, k = divmod(i, self.beats)
            p, g = divmod(k, self.groups)
            is_last = (word >> self.data_width) & 1
            if check_last and is_last != (k == self.beats - 1):
                raise ValueError(f"frame {f}, beat {k}: last flag is {is_last}")
            for j in range(self.simd):
                raw[f, p, g * self.simd + j] = (word >> (j * self.bits)) & mask
        if self.groups * self.simd > self.channels and np.any(raw[:, :, self.channels:]):
            f, p, c = np.argwhere(raw[:, :, self.channels:])[0]
            raise ValueError(f"frame {f}, pixel {p}: padding slot of channel {self.channels + c} is not 0")
        raw = raw[:, :, :self.channels].transpose(0, 2, 1).reshape(n, *self.shape)
        return intmath.decode_acts(self.code, self.bits, raw)

    def locate(self, beat: int, slot: int) -> dict:
        """Frame, pixel (y, x) and channel of ``slot`` in beat number ``beat`` (for mismatch messages)."""
        f, k = divmod(int(beat), self.beats)
        p, g = divmod(k, self.groups)
        y, x = divmod(p, self.width)
        return {"frame": f, "y": y, "x": x, "channel": g * self.simd + int(slot)}
