"""One exception family whose messages are meant for users (one clear line each)."""


class PsoheadError(Exception):
    """Base class: the CLI prints ``str(err)`` on one line and exits non-zero."""


class InputError(PsoheadError):
    """A user-supplied file or argument is missing, unreadable or malformed."""


class LabelError(InputError):
    """A 25-number camera label is malformed (length, NaN, non-rigid rotation...)."""


class CheckpointError(PsoheadError):
    """A network file is missing, corrupt, foreign or incompatible."""


class UnsafePickleError(CheckpointError):
    """A pickle asked for something a network snapshot never contains; nothing was executed."""


class NoFaceError(InputError):
    """No usable face was found in an image."""
