"""One gateway per state dir: an exclusive lock on <state_dir>/gateway.lock.

flock(2) locks belong to the open file: the kernel drops them when the holder dies, however it
dies. So a lock left by a SIGKILLed gateway is simply free, and taking it over is safe; the pid
written in the file is only for the message the second gateway prints.
"""

from __future__ import annotations

import fcntl
import logging
import os
from pathlib import Path
from typing import IO

from gateway_core.private_files import private_file

log = logging.getLogger(__name__)

LOCK_NAME = "gateway.lock"


class StateDirBusy(Exception):
    """Another gateway runs on this state dir."""


class StateLock:
    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / LOCK_NAME
        self._file: IO[str] | None = None

    def acquire(self) -> None:
        private_file(self.path)
        handle = open(self.path, "a+", encoding="utf-8")  # noqa: SIM115 - held until release
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            handle.close()
            raise StateDirBusy(
                f"{self.path.parent} is in use by another gateway (pid {holder}); "
                "stop it first, or use another gateway.state_dir"
            ) from None
        handle.seek(0)
        previous = handle.read().strip()
        if previous and previous != str(os.getpid()):
            log.warning(
                "took over the state dir lock of pid %s, which is gone", previous,
                extra={"event": "lock_taken_over"},
            )  # fmt: skip
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        self._file = handle

    def release(self) -> None:
        if self._file is not None:
            self._file.seek(0)
            self._file.truncate()
            fcntl.flock(self._file.fileno(), fcntl.LOCK_UN)
            self._file.close()
            self._file = None
