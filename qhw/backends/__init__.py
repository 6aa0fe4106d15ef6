"""Backends: Verilog emission, cocotb simulation, yosys synthesis, nextpnr, reports."""
