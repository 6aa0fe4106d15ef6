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
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from ..hw.pe.params import check_positive


@dataclass(frozen=True)
class Fold:
    """Array shape of one conv / dense engine.

    Parameters
    ----------
    rows, cols, lanes : int
        Array rows, columns (output channels computed at once) and SIMD lanes
        per PE, each at least 1.

    Attributes
    ----------
    simd : int
        ``rows · lanes``: input channels per beat of the layer's input stream.
    """

    rows: int
    cols: int
    lanes: int = 1

    def __post_init__(self):
        for name in ("rows", "cols", "lanes"):
            object.__setattr__(self, name, check_positive(name, getattr(self, name)))

    @property
    def simd(self) -> int:
        return self.rows * self.lanes

    def to_dict(self) -> dict[str, int]:
        return {"rows": self.rows, "cols": self.cols, "lanes": self.lanes, "simd": self.simd}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Fold":
        if not isinstance(d, Mapping):
            raise TypeError(f"a fold must be an object with rows, cols, lanes, not {d!r}")
        unknown = set(d) - {"rows", "cols", "lanes", "simd"}
        if unknown:
            raise ValueError(f"unknown fold field(s) {sorted(unknown)}")
        try:
            fold = cls(rows=d["rows"], cols=d["cols"], lanes=d.get("lanes", 1))
        except KeyError as exc:
            raise ValueError(f"a fold needs {exc.args[0]!r}") from None
        if "simd" in d and d["simd"] != fold.simd:
            raise ValueError(f"simd {d['simd']} is not rows·lanes = {fold.simd}")
        return fold
