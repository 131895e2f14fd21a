"""Running operator actions from the console: confirm first, then act, then say what happened.

Every mutating action goes through `confirm` (a yes/no with its targets listed) or `ask` (a
value first: a reason, a timeout), then `run`, which calls the backend in a worker, shows the
gateway's answer as a notification and refreshes the screen. A failing action never takes
the console down.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from textual.app import App

from console.backend import Backend
from console.safety import clean
from console.screens.dialogs import ConfirmScreen, InputScreen
from gateway_core.control import Action, ActionResult

log = logging.getLogger(__name__)


class DemoAction(StrEnum):
    """What only the demo can do (it owns the gateway, so it can crash it on purpose)."""

    CRASH_RESTART = "crash-restart"


# Actions that hold the gateway for a while: the header says so meanwhile.
LONG: dict[Action | DemoAction, str] = {
    Action.DRAIN: "draining",
    Action.RESTART: "restarting",
    DemoAction.CRASH_RESTART: "restarting",
}

Done = Callable[[ActionResult], None]


@dataclass(frozen=True, slots=True)
class Request:
    action: Action | DemoAction
    targets: tuple[str, ...] = ()
    reason: str | None = None
    timeout: float | None = None


class Operations:
    def __init__(
        self,
        app: App[Any],
        backend: Backend,
        refresh: Callable[[], Awaitable[None]],
        demo_restart: Callable[[], Awaitable[ActionResult]] | None = None,
    ) -> None:
        self._app = app
        self._backend = backend
        self._refresh = refresh
        self._demo_restart = demo_restart
        self.busy: str | None = None  # a long action in progress, for the header

    @property
    def demo(self) -> bool:
        return self._demo_restart is not None

    def confirm(
        self,
        request: Request,
        title: str,
        verb: str,
        described: Sequence[str] = (),
        done: Done | None = None,
    ) -> None:
        """Ask yes/no (Cancel focused) with the targets listed, then run."""

        def chosen(answer: object) -> None:
            if answer is True:
                self.run(request, done)

        self._app.push_screen(ConfirmScreen(title, described, verb, danger=True), chosen)

    def ask(
        self,
        screen: InputScreen,
        make: Callable[[str], Request],
        done: Done | None = None,
    ) -> None:
        """Ask for a value (the dialog validates it), then run the request made from it."""

        def chosen(answer: object) -> None:
            if isinstance(answer, str):
                self.run(make(answer), done)

        self._app.push_screen(screen, chosen)

    def run(self, request: Request, done: Done | None = None) -> None:
        self._app.run_worker(self._perform(request, done), group="actions")

    async def act(self, request: Request) -> ActionResult:
        """The action itself, without a confirmation (the caller has asked already)."""
        self.busy = LONG.get(request.action)
        try:
            if request.action is DemoAction.CRASH_RESTART:
                if self._demo_restart is None:
                    return ActionResult(False, "only the demo crashes on purpose")
                return await self._demo_restart()
            return await self._backend.act(
                request.action,
                request.targets,
                reason=request.reason,
                timeout=request.timeout,
            )
        except Exception as error:  # an action failing must not take the console down
            log.exception("action %s failed", request.action)
            return ActionResult(False, f"{request.action} failed: {error}")
        finally:
            self.busy = None

    async def _perform(self, request: Request, done: Done | None) -> None:
        result = await self.act(request)
        if done is not None:
            done(result)
        self._app.notify(
            clean(result.message, 300),
            title="Done" if result.ok else "Refused",
            severity="information" if result.ok else "error",
            markup=False,
        )
        await self._refresh()
