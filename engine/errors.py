"""The project's exceptions: one base class, each subclass also a matching built-in.

Callers can catch ``OstinatoError`` for anything of ours, or the built-in
(``ValueError``, ``ConnectionError``, ...) when they do not care where it came from.
"""


class OstinatoError(Exception):
    """Base of every error Ostinato raises on purpose."""


class InvalidMessage(OstinatoError, ValueError):
    """A control message is malformed or a field is out of range.

    ``field`` names the offending field (or ``None`` for the message as a whole)
    and ``allowed`` describes what would have been accepted.
    """

    def __init__(self, message, field=None, allowed=None):
        super().__init__(message)
        self.field = field
        self.allowed = allowed


class InvalidToken(OstinatoError, ValueError):
    """A token id or event value lies outside the vocabulary."""


class InvalidMidi(OstinatoError, ValueError):
    """A MIDI (or other score) file cannot be read into notes."""


class ModelError(OstinatoError, ValueError):
    """A checkpoint or exported model is missing, corrupt or incompatible."""


class ServerError(OstinatoError, RuntimeError):
    """The server answered a request with an error reply."""

    def __init__(self, message, code=None, field=None, allowed=None):
        super().__init__(message)
        self.code = code
        self.field = field
        self.allowed = allowed


class ServerUnavailable(OstinatoError, ConnectionError):
    """A server (or a process it needs) did not answer in time, or is not running."""


class PortError(OstinatoError, OSError):
    """A MIDI or audio port cannot be opened or written."""


class AuthError(OstinatoError, PermissionError):
    """A socket would take remote commands without authentication, or its keys are unusable."""
