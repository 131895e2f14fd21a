"""One `switchboard attach` process per browser tab, and at most `web.max_clients` of them.

textual-serve's AppService speaks the terminal protocol with the process (keys and resizes
in, screen updates out). Here it is started without a shell, in a process group of its own
(so nothing of it outlives the tab), told to quit when the tab closes, and killed if it does
not within QUIT_GRACE. When the process ends by itself (the visitor pressed q, or it could
not reach the gateway) the tab is told why and its websocket is closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import itertools
import logging
import os
import signal
import time
from asyncio.subprocess import Process
from collections.abc import Awaitable, Callable, Sequence

from textual_serve.app_service import AppService
from textual_serve.download_manager import DownloadManager

from console.safety import clean
from console.web.driver import DRIVER

log = logging.getLogger(__name__)

QUIT_GRACE = 5.0  # seconds a console has to leave when its tab closed, before SIGTERM
TERM_GRACE = 2.0  # then before SIGKILL


class Visitor(AppService):
    """A browser tab's console process."""

    def __init__(
        self,
        number: int,
        argv: Sequence[str],
        *,
        hidden: Sequence[str] = (),
        write_bytes: Callable[[bytes], Awaitable[None]],
        write_str: Callable[[str], Awaitable[None]],
        close: Callable[[], Awaitable[object]],
    ) -> None:
        super().__init__(
            " ".join(argv),
            write_bytes=write_bytes,
            write_str=write_str,
            close=close,  # type: ignore[arg-type]  # aiohttp's close returns a bool
            download_manager=DownloadManager(),
        )
        self.number = number
        self._argv = tuple(argv)
        self._hidden = tuple(hidden)  # environment variables it must not see (the token)
        self.started_at = time.monotonic()

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    def _build_environment(self, width: int = 80, height: int = 24) -> dict[str, str]:
        environment = super()._build_environment(width, height)  # the server's, and the size
        for name in self._hidden:
            environment.pop(name, None)
        environment["TEXTUAL_DRIVER"] = DRIVER
        # Every frame of an animation crosses the network to the tab; a sliding tab underline
        # is a few dozen frames that show nothing an operator needs.
        environment["TEXTUAL_ANIMATIONS"] = "none"
        return environment

    async def _open_app_process(self, width: int = 80, height: int = 24) -> Process:
        self._process = process = await asyncio.create_subprocess_exec(
            *self._argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=self._build_environment(width, height),
            start_new_session=True,  # its own group: killed whole, and no terminal's ^C
        )
        assert process.stdin is not None
        self._stdin = process.stdin
        return process

    async def run(self) -> None:
        """The terminal protocol (as AppService.run), then: the process ended, so the tab is
        told why, if it failed, and closed."""
        process = self._process
        assert process is not None and process.stdout is not None and process.stderr is not None
        stdout, stderr = process.stdout, process.stderr
        errors = io.BytesIO()

        async def read_errors() -> None:
            while data := await stderr.read(4096):
                if errors.tell() < 64 << 10:
                    errors.write(data)

        reading_errors = asyncio.create_task(read_errors())
        try:
            for _ in range(10):  # the app's first line says it speaks the protocol
                line = await stdout.readline()
                if not line or line == b"__GANGLION__\n":
                    break
            while True:
                kind = await stdout.readexactly(1)
                size = int.from_bytes(await stdout.readexactly(4), "big")
                payload = await stdout.readexactly(size)
                if kind == b"D":
                    await self.on_data(payload)
                elif kind == b"M":
                    await self.on_meta(payload)
                elif kind == b"P":
                    await self.on_packed(payload)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(reading_errors, 1.0)
            reading_errors.cancel()
        code = await process.wait()
        text = errors.getvalue().decode("utf-8", "replace").strip()
        if code != 0:
            log.warning("web: visitor %d's console exited %d: %s", self.number, code, text[:500])
            if text:
                shown = clean(text, 2000, multiline=True).replace("\n", "\r\n")
                with contextlib.suppress(Exception):
                    await self.remote_write_bytes(f"\r\n{shown}\r\n".encode())
        with contextlib.suppress(Exception):
            await self.remote_close()

    async def stop(self) -> None:
        """Ask the console to leave; end its process group if it does not."""
        task, process = self._task, self._process
        if task is None or process is None:
            return
        self._task = None
        if not task.done():
            await self.send_meta({"type": "quit"})
        for sig, grace in ((None, QUIT_GRACE), (signal.SIGTERM, TERM_GRACE), (signal.SIGKILL, 5)):
            if sig is not None:
                log.warning("web: visitor %d did not leave; sending %s", self.number, sig.name)
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(process.pid, sig)
            try:
                await asyncio.wait_for(asyncio.shield(task), grace)
                break
            except TimeoutError:
                continue
        await process.wait()


class Visitors:
    """The tabs being served; a new one is refused once `limit` are."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.live: dict[int, Visitor] = {}
        self._reserved = 0
        self._numbers = itertools.count(1)

    @property
    def full(self) -> bool:
        return len(self.live) + self._reserved >= self.limit

    def reserve(self) -> int | None:
        """A number for a new visitor, or None when full. Taken at once (no await between the
        check and the count), so two tabs arriving together cannot both take the last place."""
        if self.full:
            return None
        self._reserved += 1
        return next(self._numbers)

    def add(self, visitor: Visitor) -> None:
        self._reserved -= 1
        self.live[visitor.number] = visitor

    def release(self, number: int, *, started: bool) -> None:
        if started:
            self.live.pop(number, None)
        else:
            self._reserved -= 1
