"""Processing elements: XNOR-popcount, shift-add (pow2) and MAC, streaming or as systolic cells."""

from .cell import SystolicCell
from .mac import MacPE
from .shift_add import ShiftAddPE
from .spec import PESpec
from .stream_pe import StreamPE
from .xnor import XnorPopcountPE

__all__ = ["PESpec", "StreamPE", "XnorPopcountPE", "ShiftAddPE", "MacPE", "SystolicCell"]
