"""Integer network description, shared integer semantics, golden model.

``intmath``    integer semantics shared with the hardware (encodings, bounds, thresholds, mul-shift)
``graph``      the integer network: :class:`~qhw.ir.graph.Network` and its layer kinds
``requant``    thresholds / mul-shift requantizers and their exact construction
``serialize``  the ``qhw-net`` file format (NET.json + NET.npz), see docs/IR_FORMAT.md
``golden``     the bit-exact int64 PyTorch executor (imports torch)
``export``     trained QResNet -> Network (imports torch)
``check``      golden vs fake-quant comparison behind ``qhw check``
"""
