"""qhw doctor: is every tool the flow needs installed, and which version."""

from __future__ import annotations

from qhw.cli import Result, table

HELP = "list the versions and paths of every tool and package qhw needs; say how to install what is missing"


def add_arguments(p) -> None:
    pass


def run(args) -> Result:
    from qhw.backends.toolchain import survey

    statuses = survey()
    missing = [s for s in statuses if not s.ok and s.required]
    rows = [{"tool": s.name, "kind": s.kind, "where": s.path or "",
             "version": s.version if s.ok else (f"TOO OLD: {s.version}" if s.version else "MISSING")}
            for s in statuses]
    text = table(rows, ["tool", "kind", "version", "where"])
    if missing:
        text += "\n\nmissing or unusable:\n" + "\n".join(
            f"  {s.name}: {s.problem + '; ' if s.problem else ''}install with: {s.install}" for s in missing)
    else:
        text += "\n\nall tools present"
    data = {"tools": [s.__dict__ | {"ok": s.ok} for s in statuses],
            "missing": [{"tool": s.name, "install": s.install, "problem": s.problem} for s in missing]}
    return Result(data, text, exit_code=1 if missing else 0)
