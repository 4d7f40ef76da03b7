"""A device's access-point status, as stored and sent on the wire (0, 1, 2).

The values are the original's (``AP-STA-CONNECTED`` is 1, disconnected 2)
and appear unchanged in the connection DB, in ``AP <mac> <status>`` events
and in GET_MAP replies; :class:`DeviceStatus` is an ``IntEnum`` so they still
format as plain digits.
"""

from __future__ import annotations

from enum import IntEnum

__all__ = ["DeviceStatus"]


class DeviceStatus(IntEnum):
    """Whether the AP last reported the station as associated."""

    UNKNOWN = 0
    CONNECTED = 1
    DISCONNECTED = 2

    @classmethod
    def _missing_(cls, value: object) -> DeviceStatus:
        """A value the original never wrote (a hand-edited DB) reads as unknown."""
        return cls.UNKNOWN
