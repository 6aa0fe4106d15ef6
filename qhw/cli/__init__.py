"""The ``qhw`` command line.

Each verb lives in its own module ``qhw.cli.<verb>`` exposing

``HELP``                    one-line summary shown by ``qhw --help``
``add_arguments(parser)``   its options (``--json`` is added for every verb)
``run(args) -> Result``     the work; heavy imports (torch, amaranth) go inside

A :class:`Result` carries a JSON-serializable ``data`` dict for ``--json`` and
the text printed for people. User errors are :class:`qhw.errors.QhwError`
and come out as one line ``qhw <verb>: error: ...`` with a non-zero exit.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from dataclasses import dataclass, field
from typing import Any

from qhw import __version__
from qhw.errors import QhwError

#: verb name -> module under qhw.cli (module names avoid clashing with builtins)
VERBS: dict[str, str] = {
    "doctor": "doctor",
    "synth": "synth_cmd",
    "pnr": "pnr_cmd",
    "train": "train_cmd",
    "export": "export_cmd",
    "check": "check_cmd",
    "import": "import_cmd",
    "build": "build_cmd",
    "fit": "fit_cmd",
    "sim": "sim_cmd",
    "board": "board_cmd",
    "report": "report_cmd",
    "bench": "bench_cmd",
    "demo": "demo",
}


@dataclass
class Result:
    data: dict[str, Any]
    text: str = ""
    exit_code: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


def _load(verb: str):
    try:
        return importlib.import_module(f"qhw.cli.{VERBS[verb]}")
    except ModuleNotFoundError as exc:
        if exc.name == f"qhw.cli.{VERBS[verb]}":
            return None
        raise


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="qhw",
        description="Quantized neural networks to bit-exact FPGA hardware, on an open toolchain.",
    )
    parser.add_argument("--version", action="version", version=f"qhw {__version__}")
    sub = parser.add_subparsers(dest="verb", metavar="VERB")
    for verb in VERBS:
        module = _load(verb)
        if module is None:
            continue
        p = sub.add_parser(verb, help=module.HELP, description=module.HELP)
        module.add_arguments(p)
        p.add_argument("--json", action="store_true", help="print one JSON document on stdout instead of text")
        p.set_defaults(_module=module)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.verb is None:
        parser.print_help()
        return 2
    try:
        result: Result = args._module.run(args)
    except QhwError as exc:
        msg = str(exc).replace("\n", " ")
        if getattr(args, "json", False):
            print(json.dumps({"ok": False, "error": msg}))
        print(f"qhw {args.verb}: error: {msg}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"qhw {args.verb}: interrupted", file=sys.stderr)
        return 130
    if args.json:
        print(json.dumps({"ok": result.exit_code == 0, **result.data}, indent=2, sort_keys=True))
    elif result.text:
        print(result.text)
    return result.exit_code


def progress(message: str) -> None:
    """Progress for long work goes to stderr so ``--json`` stdout stays clean."""
    print(message, file=sys.stderr, flush=True)


def table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    """Plain fixed-width text table; numbers right-aligned, text left-aligned."""
    cells = [[str(r.get(c, "")) for c in columns] for r in rows]
    numeric = [all(isinstance(r.get(c), (int, float)) for r in rows) for c in columns]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]

    def line(vals):
        return "  ".join(v.rjust(w) if num else v.ljust(w)
                         for v, w, num in zip(vals, widths, numeric)).rstrip()

    return "\n".join([line(columns), line(["-" * w for w in widths])] + [line(r) for r in cells])
