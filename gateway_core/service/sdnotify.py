"""Telling systemd how the gateway is doing, without any systemd library.

The sd_notify protocol: systemd puts the path of an AF_UNIX datagram socket into NOTIFY_SOCKET;
every message is one datagram of newline-separated KEY=VALUE lines. A path that starts with
"@" lives in the abstract namespace (the "@" stands for a leading NUL byte).

Notifying is best effort. No NOTIFY_SOCKET means the gateway is not run by systemd (or not as
Type=notify) and every call is a no-op; a socket that is missing or refuses the datagram is
logged at debug level and ignored: a notify failure must never take the gateway down.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import re
import socket
from collections.abc import Awaitable, Callable, Mapping

log = logging.getLogger(__name__)

NOTIFY_SOCKET = "NOTIFY_SOCKET"
WATCHDOG_USEC = "WATCHDOG_USEC"
WATCHDOG_PID = "WATCHDOG_PID"

# Anything that could end a line (the protocol splits on "\n") or truncate the datagram.
_LINE_BREAKING = re.compile(r"[\x00-\x1f\x7f\x85\u2028\u2029]+")


def single_line(text: str) -> str:
    """text with every newline and control character turned into a space: one VALUE, never
    an extra KEY=VALUE line."""
    return _LINE_BREAKING.sub(" ", text).strip()


class SystemdNotifier:
    """Sends sd_notify messages to one socket address; disabled (a no-op) without one."""

    def __init__(self, address: str | None) -> None:
        self._address = address or None

    @classmethod
    def from_environment(cls, env: Mapping[str, str] | None = None) -> SystemdNotifier:
        """The notifier for NOTIFY_SOCKET in env (os.environ by default); disabled when it is
        unset or empty."""
        source = os.environ if env is None else env
        return cls(source.get(NOTIFY_SOCKET, "").strip() or None)

    @property
    def enabled(self) -> bool:
        return self._address is not None

    @property
    def address(self) -> str | None:
        """The socket address as given (an abstract one still starts with "@")."""
        return self._address

    def ready(self, status: str = "") -> bool:
        """READY=1: startup is finished (Type=notify units wait for this)."""
        return self._send("READY=1", *_status(status), f"MAINPID={os.getpid()}")

    def stopping(self, status: str = "") -> bool:
        """STOPPING=1: shutdown (the drain) has begun."""
        return self._send("STOPPING=1", *_status(status))

    def extend_timeout(self, seconds: float) -> bool:
        """EXTEND_TIMEOUT_USEC: the current start/stop timeout is extended to `seconds` from
        now (systemd >= 236). Negative means 0; NaN or infinity is not sent."""
        if not math.isfinite(seconds):
            log.debug("sd_notify: not extending the timeout by %r seconds", seconds)
            return False
        usec = max(0, int(seconds * 1_000_000))
        return self._send(f"EXTEND_TIMEOUT_USEC={usec}")

    def watchdog(self) -> bool:
        """WATCHDOG=1: the keep-alive ping for WatchdogSec=."""
        return self._send("WATCHDOG=1")

    def status(self, text: str) -> bool:
        """STATUS=: the one-line status `systemctl status` shows."""
        return self._send(f"STATUS={single_line(text)}")

    def _send(self, *lines: str) -> bool:
        """One datagram; True when it was handed to the socket. Never raises."""
        if self._address is None:
            return False
        payload = "\n".join(lines).encode("utf-8", "replace")
        target = "\0" + self._address[1:] if self._address.startswith("@") else self._address
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                # Never block the event loop on a receiver that is not reading.
                sock.setblocking(False)
                sock.sendto(payload, target)
        except (OSError, ValueError) as error:  # ValueError: e.g. a NUL byte in the path
            log.debug("sd_notify to %s failed: %s", self._address, error)
            return False
        return True

    def __repr__(self) -> str:
        return f"SystemdNotifier({self._address!r})"


def _status(text: str) -> tuple[str, ...]:
    line = single_line(text)
    return (f"STATUS={line}",) if line else ()


def watchdog_interval(env: Mapping[str, str] | None = None) -> float | None:
    """Seconds between WATCHDOG=1 pings, or None when systemd expects none.

    Half the WatchdogSec= period (WATCHDOG_USEC), as sd_watchdog_enabled(3) recommends. When
    WATCHDOG_PID is set it must name this process: otherwise the watchdog is someone else's.
    """
    source = os.environ if env is None else env
    raw_usec = source.get(WATCHDOG_USEC, "").strip()
    if not raw_usec:
        return None
    raw_pid = source.get(WATCHDOG_PID, "").strip()
    try:
        usec = int(raw_usec)
        pid = int(raw_pid) if raw_pid else None
    except ValueError:
        log.debug("ignoring malformed watchdog settings: usec=%r pid=%r", raw_usec, raw_pid)
        return None
    if usec <= 0 or (pid is not None and pid != os.getpid()):
        return None
    return usec / 2 / 1_000_000


async def watchdog_loop(
    notifier: SystemdNotifier,
    interval: float,
    sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
) -> None:
    """Ping the watchdog every `interval` seconds, the first ping at once; runs until
    cancelled."""
    while True:
        notifier.watchdog()
        await sleep(interval)
