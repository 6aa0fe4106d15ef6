"""User-facing errors.

Everything a user can cause (bad file, missing tool, bit-width out of range)
raises a :class:`QhwError`. The CLI prints its message as one line and exits
non-zero; only programming errors produce a traceback.
"""

from __future__ import annotations


class QhwError(Exception):
    """An error whose message is meant for the user, as one line."""

    exit_code = 2


class InputError(QhwError):
    """A missing, malformed or unsupported input file or argument."""


class FormatVersionError(InputError):
    """A file written in a format version this qhw does not read."""


class ToolMissingError(QhwError):
    """A required external tool or package is not installed."""

    exit_code = 3

    def __init__(self, tool: str, install: str):
        self.tool = tool
        self.install = install
        super().__init__(f"{tool} is not installed or not on PATH; install it with: {install}")


class ToolFailedError(QhwError):
    """An external tool ran and failed; the message names the log to read."""

    exit_code = 4


class SimulationMismatch(QhwError):
    """Hardware output differed from the reference model."""

    exit_code = 5
