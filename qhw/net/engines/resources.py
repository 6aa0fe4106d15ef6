"""Adding up the resource estimates of an engine's stages."""

from __future__ import annotations

from typing import Iterable, Mapping


def add_resources(parts: Iterable[Mapping[str, int]]) -> dict[str, int]:
    """Sum every count the parts report (keys missing in a part count 0)."""
    total: dict[str, int] = {}
    for part in parts:
        for key, value in part.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                total[key] = total.get(key, 0) + value
    return {k: int(round(v)) for k, v in sorted(total.items())}
