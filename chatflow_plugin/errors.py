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


class Terminated(KeyboardInterrupt):
    """SIGTERM (a scheduler's pre-emption or time limit, ``kill``): unwinds like Ctrl-C, so outputs being written
    are cleaned up and locks released, and exits 143."""


def _terminate(signum, frame):
    raise Terminated()


def unwind_on_sigterm() -> None:
    """Make SIGTERM raise :class:`Terminated` (unless the process already handles it)."""
    import signal

    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _terminate)


def exit_code(prog: str, run: Callable[[], int | None],
              translate: Callable[[BaseException], ChatflowError | None] | None = None) -> int:
    """Run an entry point: a :class:`ChatflowError` prints ``<prog>: error: <message>`` on stderr and gives 2 (no
    traceback), SIGTERM gives 143 and Ctrl-C 130 (both after unwinding), anything else returned is the exit code
    (None: 0). ``translate`` turns other exceptions it recognises (a full or read-only disk) into a
    :class:`ChatflowError`; the rest propagate."""
    unwind_on_sigterm()
    try:
        code = run()
    except ChatflowError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    except Terminated:
        print(f"{prog}: terminated", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        clean = translate(exc) if translate is not None else None
        if clean is None:
            raise
        print(f"{prog}: error: {clean}", file=sys.stderr)
        return 2
    return code if isinstance(code, int) else 0
