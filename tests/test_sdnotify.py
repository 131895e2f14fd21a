"""sd_notify without systemd: a real datagram socket stands in for NOTIFY_SOCKET."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway_core.service.sdnotify import (
    SystemdNotifier,
    single_line,
    watchdog_interval,
    watchdog_loop,
)

# sun_path holds 108 bytes; a long tmp_path falls back to a short directory under /tmp.
MAX_SOCKET_PATH = 100


class FakeSystemd:
    """The receiving end of NOTIFY_SOCKET."""

    def __init__(self, sock: socket.socket, address: str) -> None:
        self.sock = sock
        self.address = address  # as NOTIFY_SOCKET spells it

    def received(self) -> list[str]:
        """Every datagram waiting, in order."""
        messages: list[str] = []
        while True:
            try:
                data = self.sock.recv(65536)
            except BlockingIOError:
                return messages
            messages.append(data.decode("utf-8"))


@pytest.fixture
def systemd(tmp_path: Path) -> Iterator[FakeSystemd]:
    path = tmp_path / "notify.sock"
    if len(os.fsencode(path)) > MAX_SOCKET_PATH:
        path = Path(tempfile.mkdtemp(prefix="sd", dir="/tmp")) / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        sock.setblocking(False)
        yield FakeSystemd(sock, str(path))
    path.unlink(missing_ok=True)
    if path.parent != tmp_path:
        path.parent.rmdir()


def notifier_for(systemd: FakeSystemd) -> SystemdNotifier:
    return SystemdNotifier.from_environment({"NOTIFY_SOCKET": systemd.address})


def test_ready_stopping_extend_timeout_send_exact_datagrams_in_order(
    systemd: FakeSystemd,
) -> None:
    notifier = notifier_for(systemd)
    assert notifier.enabled

    assert notifier.ready("intake started")
    assert notifier.stopping("draining")
    assert notifier.extend_timeout(42.5)

    assert systemd.received() == [
        f"READY=1\nSTATUS=intake started\nMAINPID={os.getpid()}",
        "STOPPING=1\nSTATUS=draining",
        "EXTEND_TIMEOUT_USEC=42500000",
    ]


def test_messages_without_status_and_the_other_calls(systemd: FakeSystemd) -> None:
    notifier = notifier_for(systemd)

    notifier.ready()
    notifier.stopping()
    notifier.watchdog()
    notifier.status("3 sessions, 1 turn running")
    notifier.extend_timeout(0.0000015)
    notifier.extend_timeout(-5)

    assert systemd.received() == [
        f"READY=1\nMAINPID={os.getpid()}",
        "STOPPING=1",
        "WATCHDOG=1",
        "STATUS=3 sessions, 1 turn running",
        "EXTEND_TIMEOUT_USEC=1",
        "EXTEND_TIMEOUT_USEC=0",
    ]


def test_non_finite_timeout_is_not_sent(systemd: FakeSystemd) -> None:
    notifier = notifier_for(systemd)

    assert not notifier.extend_timeout(float("inf"))
    assert not notifier.extend_timeout(float("nan"))

    assert systemd.received() == []


@pytest.mark.skipif(sys.platform != "linux", reason="the abstract namespace is Linux-only")
def test_abstract_namespace_socket() -> None:
    name = f"switchboard-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.setblocking(False)
        systemd = FakeSystemd(sock, "@" + name)
        notifier = notifier_for(systemd)

        assert notifier.ready("up")
        assert notifier.watchdog()

        assert systemd.received() == [
            f"READY=1\nSTATUS=up\nMAINPID={os.getpid()}",
            "WATCHDOG=1",
        ]


@pytest.mark.parametrize("env", [{}, {"NOTIFY_SOCKET": ""}, {"NOTIFY_SOCKET": "  "}])
def test_without_notify_socket_the_notifier_is_disabled(env: dict[str, str]) -> None:
    notifier = SystemdNotifier.from_environment(env)

    assert not notifier.enabled
    assert notifier.address is None
    assert not notifier.ready("up")
    assert not notifier.stopping()
    assert not notifier.extend_timeout(10)
    assert not notifier.watchdog()
    assert not notifier.status("x")


def test_from_environment_defaults_to_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", "/run/systemd/notify")
    assert SystemdNotifier.from_environment().address == "/run/systemd/notify"
    monkeypatch.delenv("NOTIFY_SOCKET")
    assert not SystemdNotifier.from_environment().enabled


def test_unreachable_sockets_never_raise(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    not_a_socket = tmp_path / "plain-file"
    not_a_socket.write_text("")
    stream_dir = Path(tempfile.mkdtemp(prefix="sd", dir="/tmp"))
    stream_path = stream_dir / "stream.sock"
    addresses = [
        str(tmp_path / "missing.sock"),  # no such file
        str(not_a_socket),  # connection refused
        str(stream_path),  # a SOCK_STREAM listener: wrong socket type
        "@switchboard-test-nobody-" + uuid.uuid4().hex,  # nobody bound it
        "/" + "x" * 200,  # too long for sun_path
        "/bad\0path",  # NUL in the path
        "vsock:2:1234",  # a transport this notifier does not speak
    ]
    caplog.set_level(logging.DEBUG, logger="gateway_core.service.sdnotify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
        listener.bind(str(stream_path))
        listener.listen()
        for address in addresses:
            notifier = SystemdNotifier.from_environment({"NOTIFY_SOCKET": address})
            assert notifier.enabled
            assert not notifier.ready("up")
            assert not notifier.watchdog()
            assert not notifier.extend_timeout(5)
    stream_path.unlink()
    stream_dir.rmdir()

    failures = [r for r in caplog.records if "sd_notify" in r.getMessage()]
    assert len(failures) == 3 * len(addresses)
    assert all(record.levelno == logging.DEBUG for record in failures)


@pytest.mark.parametrize(
    "status",
    [
        "draining\nREADY=1",
        "draining\r\nMAINPID=1",
        "draining\x00READY=1",
        "draining\u2028READY=1",
        "\ndraining\n\nERRNO=5\n",
    ],
)
def test_newlines_cannot_inject_extra_lines(systemd: FakeSystemd, status: str) -> None:
    notifier = notifier_for(systemd)

    notifier.status(status)
    notifier.stopping(status)
    notifier.ready(status)

    status_message, stopping, ready = systemd.received()
    for message in (status_message, stopping, ready):
        for line in message.split("\n"):
            assert "\x00" not in line and "\r" not in line and "\u2028" not in line
    assert status_message.count("\n") == 0
    assert status_message.startswith("STATUS=draining ")
    assert stopping.split("\n") == ["STOPPING=1", status_message]
    assert ready.split("\n") == ["READY=1", status_message, f"MAINPID={os.getpid()}"]


def test_single_line() -> None:
    assert single_line("a\nb\r\nc\td") == "a b c d"
    assert single_line("  \n ") == ""
    assert single_line("привет, мир") == "привет, мир"


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, None),
        ({"WATCHDOG_USEC": ""}, None),
        ({"WATCHDOG_USEC": "30000000"}, 15.0),
        ({"WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "{pid}"}, 0.5),
        ({"WATCHDOG_USEC": " 20000000 ", "WATCHDOG_PID": ""}, 10.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "{other}"}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "-5"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "me"}, None),
        ({"WATCHDOG_PID": "{pid}"}, None),
    ],
)
def test_watchdog_interval(env: dict[str, str], expected: float | None) -> None:
    pid = os.getpid()
    filled = {k: v.format(pid=pid, other=pid + 1) for k, v in env.items()}

    assert watchdog_interval(filled) == expected


def test_watchdog_interval_defaults_to_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "4000000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert watchdog_interval() == 2.0
    monkeypatch.delenv("WATCHDOG_USEC")
    assert watchdog_interval() is None


class Stop(Exception):
    pass


async def test_watchdog_loop_pings_between_injected_sleeps(systemd: FakeSystemd) -> None:
    notifier = notifier_for(systemd)
    slept: list[float] = []
    seen_before_sleep: list[int] = []

    async def fake_sleep(seconds: float) -> None:
        seen_before_sleep.append(len(systemd.received()))
        slept.append(seconds)
        if len(slept) == 3:
            raise Stop

    with pytest.raises(Stop):
        await watchdog_loop(notifier, 7.5, sleep=fake_sleep)

    assert slept == [7.5, 7.5, 7.5]
    assert seen_before_sleep == [1, 1, 1]  # one ping, then a sleep: the first ping at once


async def test_watchdog_loop_runs_until_cancelled(systemd: FakeSystemd) -> None:
    notifier = notifier_for(systemd)
    pings: list[str] = []
    enough = asyncio.Event()

    async def fake_sleep(seconds: float) -> None:
        pings.extend(systemd.received())
        if len(pings) >= 5:
            enough.set()
        await asyncio.sleep(0)

    task = asyncio.create_task(watchdog_loop(notifier, 10.0, sleep=fake_sleep))
    await asyncio.wait_for(enough.wait(), timeout=5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    assert len(pings) >= 5
    assert set(pings) == {"WATCHDOG=1"}


async def test_watchdog_loop_survives_a_vanished_socket(tmp_path: Path) -> None:
    notifier = SystemdNotifier.from_environment({"NOTIFY_SOCKET": str(tmp_path / "gone.sock")})
    slept = 0

    async def fake_sleep(seconds: float) -> None:
        nonlocal slept
        slept += 1
        if slept == 3:
            raise Stop

    with pytest.raises(Stop):
        await watchdog_loop(notifier, 1.0, sleep=fake_sleep)
    assert slept == 3
