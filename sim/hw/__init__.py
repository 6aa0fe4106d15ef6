"""cocotb testbenches for the hardware blocks of qhw.hw (run from tests/test_sim_hw_*.py)."""
