"""One streaming engine per IR layer kind (see :mod:`.base` for the common interface).

==========================  ==================================================
IR layer                    engine
==========================  ==================================================
``conv``, ``dense``         :class:`ConvEngine` (window → array → requant → packer)
``add``                     :class:`AddEngine` (join, ``Σ coeffs·x``, requant)
``gap``                     :class:`GlobalPoolEngine` (exact sum over H·W)
``maxpool``                 :class:`MaxPoolEngine` (window → running max)
network output              :class:`ArgmaxHead` (class index, ties to the first)
==========================  ==================================================

:func:`build_engine` builds the engine of any layer from its fold (conv /
dense) or stream width (the others) and turns everything the hardware
cannot build into one :class:`~qhw.errors.InputError` naming the layer.
"""

from __future__ import annotations

from qhw.errors import InputError
from qhw.ir.graph import Add, Conv, Dense, GlobalPool, Input, Layer, MaxPool

from ..fold import Fold
from .base import Engine
from .conv import ConvEngine
from .elementwise import AddEngine, ArgmaxHead, GlobalPoolEngine, MaxPoolEngine

__all__ = ["Engine", "ConvEngine", "AddEngine", "GlobalPoolEngine", "MaxPoolEngine", "ArgmaxHead", "build_engine"]


def build_engine(layer: Layer, *, fold: Fold | None = None, simd: int | None = None, out_simd: int | None = None,
                 **options) -> Engine:
    """The engine of ``layer``.

    Conv / dense layers take ``fold`` (and optionally ``out_simd``); add,
    global pool and max pool take ``simd``. Anything the hardware cannot
    build (an input layer, an unknown kind, a bit-width or encoding no PE
    supports, a fold that does not fit) raises :class:`InputError` naming
    the layer.
    """
    try:
        if isinstance(layer, (Conv, Dense)):
            if fold is None:
                raise ValueError("a conv / dense engine needs a fold (rows, cols, lanes)")
            return ConvEngine(layer=layer, fold=fold, out_simd=out_simd, **options)
        if simd is None:
            raise ValueError(f"a {layer.kind} engine needs simd")
        if isinstance(layer, Add):
            return AddEngine(layer=layer, simd=simd, **options)
        if isinstance(layer, GlobalPool):
            return GlobalPoolEngine(layer=layer, simd=simd, **options)
        if isinstance(layer, MaxPool):
            return MaxPoolEngine(layer=layer, simd=simd, **options)
        if isinstance(layer, Input):
            raise ValueError("the input layer has no engine (its stream is the accelerator's input port)")
        raise ValueError(f"layer kind {getattr(layer, 'kind', type(layer).__name__)!r} has no hardware engine")
    except (TypeError, ValueError) as exc:
        name = getattr(layer, "name", "?")
        raise InputError(f"layer {name} ({getattr(layer, 'kind', '?')}): cannot build hardware: {exc}") from None
