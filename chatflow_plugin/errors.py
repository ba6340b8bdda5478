"""The one exception type users see: a message that names the file, line or field at fault."""


class ChatflowError(Exception):
    """Bad input or configuration. The CLI prints ``error: <message>`` and exits 2, no traceback."""


class DataError(ChatflowError):
    """A record or file that cannot be read: ``reason``, at ``location`` (``path:line`` when known)."""

    def __init__(self, message: str, location: str | None = None):
        self.reason, self.location = message, location
        super().__init__(f"{location}: {message}" if location else message)
