"""Network assembly: the stream format between engines, fold configs, layer engines.

``qhw.net`` sits between the hardware library (:mod:`qhw.hw`: PEs, the
systolic array, requantizers, stream blocks, the window generator) and the
backends. It owns

* :mod:`qhw.net.stream` — :class:`FrameFormat`, the one stream format every
  engine reads and writes (raster order, ``simd`` channel codes per beat,
  end-of-frame flag);
* :mod:`qhw.net.fold` — :class:`Fold`, how a conv / dense layer is spread
  over a systolic array;
* :mod:`qhw.net.engines` — one streaming engine per IR layer kind, built
  directly from the :mod:`qhw.ir.graph` layer object.
"""

from .fold import Fold
from .stream import FrameFormat

__all__ = ["FrameFormat", "Fold"]
