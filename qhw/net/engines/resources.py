"""Adding up the resource estimates of an engine's stages."""

from __future__ import annotations

import inspect
from typing import Iterable, Mapping


def stage_resources(stage, family: str) -> dict:
    """A stage's estimate for ``family`` where it distinguishes families (block RAM counts), else its own."""
    fn = stage.estimate_resources
    return fn(family=family) if "family" in inspect.signature(fn).parameters else fn()


def add_resources(parts: Iterable[Mapping[str, int]]) -> dict[str, int]:
    """Sum every count the parts report (keys missing in a part count 0)."""
    total: dict[str, int] = {}
    for part in parts:
        for key, value in part.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                total[key] = total.get(key, 0) + value
    return {k: int(round(v)) for k, v in sorted(total.items())}
