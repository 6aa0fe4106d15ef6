"""qhw: quantized neural networks to bit-exact FPGA hardware.

The flow, one sub-package per step:

``qhw.quant``    quantizers, AdaQAT, models, data, training
``qhw.ir``       integer network description, shared integer semantics, golden model
``qhw.hw``       hardware library (PEs, systolic array, requantizer, stream blocks)
``qhw.net``      network assembly: one engine per layer
``qhw.backends`` Verilog emission, cocotb simulation, yosys / nextpnr, reports
"""

__version__ = "0.1.0"
