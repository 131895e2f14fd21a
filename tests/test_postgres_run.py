"""`switchboard run` on PostgreSQL as a real process: the fake Bot API, a real server, the DSN
from the environment by name, and never shown."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import psycopg
import pytest

from tests.support.fake_bot_api import FakeBotAPI
from tests.support.postgres_server import PASSWORD, PostgresServer
from tests.support.service_config import CHAT, REPO, environment, write_config

pytestmark = pytest.mark.slow
DSN_ENV = "SB_TEST_DSN"
POSTGRES = {"store": {"backend": "postgresql", "dsn_env": DSN_ENV}}


@pytest.fixture
async def fake() -> AsyncIterator[FakeBotAPI]:
    async with FakeBotAPI() as server:
        yield server


async def _run(config: Path, env: dict[str, str]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "console.cli", "run", "-c", str(config),
        cwd=REPO, env=env, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip


async def test_a_node_on_postgresql_answers_and_keeps_its_rows_there(
    tmp_path: Path, fake: FakeBotAPI, postgres_server: PostgresServer
) -> None:
    dsn = postgres_server.new_database()
    config = write_config(tmp_path, fake, sections=POSTGRES)
    process = await _run(config, environment(tmp_path, **{DSN_ENV: dsn}))
    try:
        fake.push_text(CHAT, "hello")
        assert await fake.wait_for_sent(CHAT, timeout=30) == ["You said: hello"]
        process.send_signal(signal.SIGTERM)
        out, err = await asyncio.wait_for(process.communicate(), 30)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 0, err.decode()
    events = [json.loads(line).get("event") for line in out.decode().splitlines()]
    assert "ready" in events and "stopped" in events
    assert PASSWORD not in out.decode() + err.decode()
    assert not (tmp_path / "state" / "switchboard.db").exists()
    with psycopg.connect(dsn) as raw:
        assert raw.execute("SELECT content, status FROM outbox").fetchall() == [
            ("You said: hello", "sent")
        ]
        assert raw.execute("SELECT count(*) FROM inbox WHERE status = 'done'").fetchone() == (1,)


async def test_an_unset_dsn_variable_is_a_config_error_naming_it(
    tmp_path: Path, fake: FakeBotAPI
) -> None:
    config = write_config(tmp_path, fake, sections=POSTGRES)
    process = await _run(config, environment(tmp_path))
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 78 and out == b""
    (line,) = err.decode().strip().splitlines()
    assert f"environment {DSN_ENV} (store.dsn_env): not set" in line


async def test_wrong_credentials_fail_the_run_in_one_line_without_the_password(
    tmp_path: Path, fake: FakeBotAPI, postgres_server: PostgresServer
) -> None:
    wrong = postgres_server.dsn(password="hunter2-wrong")
    config = write_config(tmp_path, fake, sections=POSTGRES)
    process = await _run(config, environment(tmp_path, **{DSN_ENV: wrong}))
    out, err = await asyncio.wait_for(process.communicate(), 60)
    text = out.decode() + err.decode()
    assert process.returncode == 1
    assert "access denied" in text and "password authentication failed" in text
    assert "hunter2-wrong" not in text and PASSWORD not in text
