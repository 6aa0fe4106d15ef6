"""What every layer engine is: one IR layer as a streaming component.

An engine is an Amaranth :class:`~amaranth.lib.wiring.Component` built
directly from a :mod:`qhw.ir.graph` layer. It reads one stream per layer
input and writes one output stream, all in the :class:`~qhw.net.stream.FrameFormat`
of the tensors they carry (raster order, ``simd`` codes per beat, ``last``
on the frame's final beat). The network compiler connects engines port to
port; wherever a producer's ``simd`` differs from its consumer's it puts a
:class:`~qhw.hw.regroup.Regroup` between them.

Every engine carries

* ``in_ports`` (names of its input stream members, in ``layer.inputs``
  order), ``in_formats`` and ``out_format``;
* ``reference(*inputs)``: the golden model's op for this one layer
  (:func:`qhw.ir.golden.layer_op`), values in, values out;
* ``estimate_cycles(frames)``: cycles from the first input transfer to the
  last output transfer with every source valid and every sink ready;
  ``cycles_per_frame()``: the steady-state initiation interval, frames back
  to back; ``latency``;
* ``estimate_resources()``: LUT / FF / DSP / BRAM before synthesis.
"""

from __future__ import annotations

import numpy as np
from amaranth.lib import wiring

from qhw.ir.graph import Layer

from ..stream import FrameFormat


def golden_op(layer: Layer):
    """The golden model's function for one layer: int64 tensors in, int64 tensor out."""
    from qhw.ir import golden

    return golden.layer_op(layer)


def packer_tail(packer) -> int:
    """Cycles from a :class:`~qhw.hw.regroup.Regroup`'s last input transfer to its last output transfer.

    The last input beat completes the output beats from the one holding its
    first channel to the pixel's end; when the input arrives no faster than
    the packer emits (every engine's case: the array gives one beat per
    ``SF`` cycles), those leave one per cycle after the packer's latency.
    """
    first = (packer.in_groups - 1) * packer.in_simd // packer.out_simd
    return packer.latency + (packer.out_groups - first) - 1


class Engine(wiring.Component):
    """Shared by every layer engine (see the module docstring)."""

    layer: Layer
    in_formats: tuple[FrameFormat, ...]
    out_format: FrameFormat

    @property
    def in_ports(self) -> tuple[str, ...]:
        return ("i_stream",) if len(self.in_formats) == 1 else tuple(f"i_stream_{k}" for k in range(len(self.in_formats)))

    def in_port(self, k: int):
        return getattr(self, self.in_ports[k])

    def reference(self, *inputs) -> np.ndarray:
        """Output values ``(N, *out.shape)`` for input values, one array per layer input."""
        import torch

        op = golden_op(self.layer)
        xs = [torch.as_tensor(np.asarray(x, dtype=np.int64)) for x in inputs]
        return op(*xs).cpu().numpy()

    def reference_beats(self, *inputs) -> list[int]:
        """The output stream's payloads for input values."""
        return self.out_format.encode(self.reference(*inputs))

    def input_beats(self, *inputs) -> list[list[int]]:
        """Each input stream's payloads for input values."""
        return [f.encode(x) for f, x in zip(self.in_formats, inputs)]
