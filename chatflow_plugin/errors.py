"""The one exception type users see: a message that names the file, line or field at fault, and the one way
every entry point (``chatflow <command>``, the host launchers) reports it."""
from __future__ import annotations

import sys
from typing import Callable


class ChatflowError(Exception):
    """Bad input or configuration. The CLI prints ``error: <message>`` and exits 2, no traceback."""


class DataError(ChatflowError):
    """A record or file that cannot be read: ``reason``, at ``location`` (``path:line`` when known)."""

    def __init__(self, message: str, location: str | None = None):
        self.reason, self.location = message, location
        super().__init__(f"{location}: {message}" if location else message)


def exit_code(prog: str, run: Callable[[], int | None]) -> int:
    """Run an entry point: a :class:`ChatflowError` prints ``<prog>: error: <message>`` on stderr and gives 2 (no
    traceback), Ctrl-C gives 130, anything else returned is the exit code (None: 0)."""
    try:
        code = run()
    except ChatflowError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    return code if isinstance(code, int) else 0
