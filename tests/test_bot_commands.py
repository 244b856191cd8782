"""``m2i telegram`` / ``m2i discord`` as an operator starts them: set-up mistakes give one clear line."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest


def m2i(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("M2I_TELEGRAM", "M2I_DISCORD"))}
    return subprocess.run(
        [sys.executable, "-m", "m2i_engine.cli", *args],
        cwd=cwd,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(("platform", "where"), [("telegram", "@BotFather"), ("discord", "Developer Portal")])
def test_no_token_says_where_to_get_one(platform: str, where: str, tmp_path: Path) -> None:
    r = m2i(platform, cwd=tmp_path)
    assert r.returncode == 2 and f"M2I_{platform.upper()}_TOKEN" in r.stderr and where in r.stderr
    assert "Traceback" not in r.stderr


def test_bots_without_a_token_name_the_variable(tmp_path: Path) -> None:
    r = m2i("bots", "--platform", "discord", cwd=tmp_path)
    assert r.returncode == 2 and "M2I_DISCORD_TOKEN" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize("platform", ["telegram", "discord"])
def test_a_blank_token_file_is_no_token(platform: str, tmp_path: Path) -> None:
    (tmp_path / "token").write_text("  \n")
    r = m2i(platform, "--token-file", str(tmp_path / "token"), cwd=tmp_path)
    assert r.returncode == 2 and "No " in r.stderr and "token" in r.stderr


def test_an_unreachable_bot_api_is_one_line_and_the_token_never_shows(tmp_path: Path) -> None:
    """PTB logs its API URL (token included) at DEBUG: with ``-v`` every line must still be masked."""
    secret = "123456:SECRET-token-value-that-must-not-leak"
    (tmp_path / "token").write_text(secret)
    r = m2i(
        "-v",
        "telegram",
        "--token-file",
        str(tmp_path / "token"),
        "--base-url",
        "http://127.0.0.1:9/bot",
        "--base-file-url",
        "http://127.0.0.1:9/file/bot",
        cwd=tmp_path,
    )
    assert r.returncode == 3, r.stderr[-2000:]
    assert "platform_unavailable" in r.stderr and "Could not reach the Telegram Bot API" in r.stderr
    assert "Bot API URL" in r.stderr  # the DEBUG line that carries the token was printed …
    assert "SECRET-token" not in r.stdout + r.stderr  # … masked


async def test_a_token_telegram_rejects_says_so(tmp_path: Path) -> None:
    """Against the local Bot API server: a wrong token gets Telegram's real 401, and the operator one line."""
    from tests.fakes.telegram_server import FakeTelegramServer

    server = await FakeTelegramServer().start()
    try:
        (tmp_path / "token").write_text("999:not-the-token-the-server-knows")
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "m2i_engine.cli",
            "telegram",
            "--token-file",
            str(tmp_path / "token"),
            "--base-url",
            server.base_url,
            "--base-file-url",
            server.base_file_url,
            cwd=tmp_path,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        _out, err_bytes = await asyncio.wait_for(proc.communicate(), 120)
    finally:
        await server.close()
    err = " ".join(err_bytes.decode().split())  # the terminal printer wraps long lines
    assert proc.returncode == 3, err[-2000:]
    assert "Telegram rejected the bot token in M2I_TELEGRAM_TOKEN" in err and "@BotFather" in err
