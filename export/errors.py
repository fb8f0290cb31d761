"""Why an export stopped: bad input (exit 2) or a model that failed verification (exit 3)."""

from __future__ import annotations


class ExportError(Exception):
    """An export that cannot go on; nothing is published."""

    exit_code = 1


class InputError(ExportError):
    """The command line, the source model or the repository does not allow this export."""

    exit_code = 2


class VerificationError(ExportError):
    """An exported graph does not reproduce its reference closely enough to be published."""

    exit_code = 3
