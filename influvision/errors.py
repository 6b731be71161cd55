"""Errors influvision raises on purpose.

Caller mistakes (an unknown model name, a file that is not a gallery) raise; bad media never stop a run:
their reason travels to the report's ``skipped`` list as a :class:`MediaError` message.
"""

from __future__ import annotations


class InfluvisionError(Exception):
    """Base for every error influvision raises on purpose."""


class UnknownModelError(InfluvisionError, ValueError):
    def __init__(self, name: str, choices: list[str], kind: str = "embedder"):
        super().__init__(f"unknown {kind} {name!r}; choose one of: {', '.join(choices) or '(none registered)'}")
        self.name, self.choices, self.kind = name, choices, kind


class WeightsError(InfluvisionError):
    """Model weights are missing, damaged or fail their checksum. The message says how to fix it."""


class MediaError(InfluvisionError):
    """A photo or video that cannot be analysed. ``str(err)`` names the file and the problem."""

    def __init__(self, path: str, problem: str):
        super().__init__(f"{path}: {problem}")
        self.path, self.problem = path, problem


class DeviceError(InfluvisionError, ValueError):
    """A device name torch does not know, or a device this machine does not have."""


class GalleryError(InfluvisionError):
    """The gallery file is damaged, foreign, or the request does not fit it (unknown or invalid name)."""


class ShapeError(InfluvisionError, ValueError):
    """An array or tensor has the wrong shape or dtype; the message says what was expected and what came."""

    def __init__(self, what: str, expected: str, got: object, hint: str = ""):
        msg = f"{what} must be {expected}, got {got}"
        super().__init__(f"{msg}: {hint}" if hint else msg)
        self.what, self.expected, self.got = what, expected, got
