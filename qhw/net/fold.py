"""How a conv / dense layer is spread over a systolic array.

A :class:`Fold` is the layer's share of hardware: a ``rows × cols`` array
of ``lanes``-wide PEs. The layer's input stream carries ``simd = rows ·
lanes`` channels per beat (the window generator emits one input beat per
array beat), so

* synapse fold ``SF = kh·kw·ceil(C_in / simd)`` beats per output pixel and
  neuron group,
* neuron fold ``NF = ceil(C_out / cols)`` groups per output pixel,
* ``NF · SF`` array beats per output pixel: the engine's cycles per frame
  are ``OH·OW·NF·SF`` when the array is the bottleneck.

Folds are JSON-serializable (``to_dict`` / ``from_dict``), so a build can
take a hand-written fold file.

``requant="serial"`` lets the engine build its requantizer over several
cycles a beat where that form's interval fits the engine's own SF and it is
cheaper, so the engine's cycles do not change: multiply-shift digit-serially
(:class:`qhw.hw.requant_serial.SerialMulShiftRequantizer`), thresholds by
binary search (:class:`qhw.hw.requant_search.SearchThresholdRequantizer`).
The default ``"parallel"`` builds today's. ``requant_interval`` lets a
serial requantizer take more cycles a beat than SF: the engine then emits
one output beat every ``max(SF, requant_interval)`` cycles. The compile pass
:func:`qhw.net.compile.pace_requantizers` sets it on every serial fold that
leaves it 0, to the most cycles a beat that keep the engine within the
network's slowest conv / dense engine, so the frame rate does not change
while a layer far from the bottleneck (a ResNet's 1×1 shortcut, SF = C_in)
gets a requantizer of one multiplier bit a cycle instead of several.

``weights="block"`` puts every weight ROM of the layer's array in block RAM
(:class:`qhw.hw.array.SystolicArray` ``weight_memory="block"``) instead of
letting the table size decide (``"auto"``): LUTs traded for block RAM, what
an iCE40 fit does when logic cells are short and block RAM is not (the
digits ResNet-8 W4A4 at width 2, one lane per layer, on the UP5K: 8,952
logic cells with the weights in LUTs, 7,847 in block RAM). Timing, latency
and the Verilog of other layers do not change.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from ..hw.pe.params import check_positive


#: ``Fold.requant`` values: today's requantizers, or the digit-serial mul-shift form where it fits
REQUANT_STYLES = ("parallel", "serial")
#: ``Fold.weights`` values: ROMs placed by size, or all in block RAM
WEIGHT_MEMORIES = ("auto", "block")


@dataclass(frozen=True)
class Fold:
    """Array shape of one conv / dense engine.

    Parameters
    ----------
    rows, cols, lanes : int
        Array rows, columns (output channels computed at once) and SIMD lanes
        per PE, each at least 1.
    requant : {"parallel", "serial"}
        Requantizer style (see the module docstring); ``to_dict`` writes it
        only when it is not the default.
    weights : {"auto", "block"}
        Where the weight ROMs go (see the module docstring); written only when
        not ``"auto"``.
    requant_interval : int
        ``requant="serial"`` only: the most cycles the requantizer may take a
        beat; 0 (the default, not written) means the engine's SF.

    Attributes
    ----------
    simd : int
        ``rows · lanes``: input channels per beat of the layer's input stream.
    """

    rows: int
    cols: int
    lanes: int = 1
    requant: str = "parallel"
    weights: str = "auto"
    requant_interval: int = 0

    def __post_init__(self):
        for name in ("rows", "cols", "lanes"):
            object.__setattr__(self, name, check_positive(name, getattr(self, name)))
        if not isinstance(self.requant, str) or self.requant not in REQUANT_STYLES:
            raise ValueError(f"requant must be one of {', '.join(REQUANT_STYLES)}, not {self.requant!r}")
        if not isinstance(self.weights, str) or self.weights not in WEIGHT_MEMORIES:
            raise ValueError(f"weights must be one of {', '.join(WEIGHT_MEMORIES)}, not {self.weights!r}")
        ri = self.requant_interval
        if isinstance(ri, bool) or not isinstance(ri, int) or ri < 0:
            raise ValueError(f"requant_interval must be an integer >= 0, not {ri!r}")
        if ri and self.requant != "serial":
            raise ValueError(f"requant_interval {ri} needs requant 'serial', not {self.requant!r}")

    @property
    def simd(self) -> int:
        return self.rows * self.lanes

    def to_dict(self) -> dict[str, int | str]:
        d: dict[str, int | str] = {"rows": self.rows, "cols": self.cols, "lanes": self.lanes, "simd": self.simd}
        if self.requant != "parallel":  # default folds serialize as before
            d["requant"] = self.requant
        if self.weights != "auto":
            d["weights"] = self.weights
        if self.requant_interval:
            d["requant_interval"] = self.requant_interval
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Fold":
        if not isinstance(d, Mapping):
            raise TypeError(f"a fold must be an object with rows, cols, lanes, not {d!r}")
        unknown = set(d) - {"rows", "cols", "lanes", "simd", "requant", "weights", "requant_interval"}
        if unknown:
            raise ValueError(f"unknown fold field(s) {sorted(unknown)}")
        try:
            fold = cls(rows=d["rows"], cols=d["cols"], lanes=d.get("lanes", 1), requant=d.get("requant", "parallel"),
                       weights=d.get("weights", "auto"), requant_interval=d.get("requant_interval", 0))
        except KeyError as exc:
            raise ValueError(f"a fold needs {exc.args[0]!r}") from None
        if "simd" in d and d["simd"] != fold.simd:
            raise ValueError(f"simd {d['simd']} is not rows·lanes = {fold.simd}")
        return fold
