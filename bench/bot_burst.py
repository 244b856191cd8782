"""How much time the chat bots add on top of the engine when many users send songs at once.

Telegram and Discord run side by side on one Engine and one BotService, exactly as ``m2i bots`` runs
them, each against its local fake server (``tests/fakes/telegram_server.py``: the Bot API;
``tests/fakes/discord_server.py``: gateway, REST and CDN) with the unmodified python-telegram-bot and
discord.py. The fake servers and the simulated users run in a child process — Discord's and
Telegram's servers are not in the bot's process either, so their work doesn't count as the bot's.
On each platform ``--users`` users send ``--songs`` songs each, one after another, all users at once
(Telegram: voice notes; Discord: ``/visualize`` with the song attached); the platforms take turns
(``--together``: both at once). Per request:

- round trip — on the fake server's clock, from the user's message/interaction to the moment the
  final answer (the photo; the image edited into the interaction's response) reaches the server;
- engine — what :class:`~bot.core.BotService` reports for that request: waiting for a turn in its
  fair queue (``queue_ms``) plus the engine itself (``engine_ms``);
- bot overhead = round trip − engine: delivering the event (long poll / gateway), acknowledging,
  downloading the song, encoding the PNG, uploading the answer, the adapters' own code.

It prints p50/p95 of each per platform (absolute ms, and the overhead as a share of the round trip),
whether the overhead goal (p50 ≤ 20 ms) is met, and the number of lost and duplicated answers, which
must both be 0 (the exit status is 1 otherwise).

Only a few distinct songs are sent, so the engine's analysis cache answers all but the first request
per song and the engine only draws (256-pixel images): that is what makes 1000 requests feasible on
two cores, and it keeps the engine's share small so the bots' own cost stands out. Rate limits are
raised for the run (each user sends 10 songs in a row); the first request per song and platform is a
warm-up and not counted.

Usage (from the repository root)::

    python bench/bot_burst.py                     # 50 users × 10 songs on each platform
    python bench/bot_burst.py --users 5 --songs 2 # a quick run
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import asyncio  # noqa: E402
import logging  # noqa: E402
import multiprocessing  # noqa: E402
import shlex  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from collections import defaultdict  # noqa: E402
from collections.abc import Awaitable, Callable, Mapping  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from multiprocessing.connection import Connection  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

import discord.gateway  # noqa: E402
import discord.http  # noqa: E402
import yarl  # noqa: E402
from pydantic import SecretStr  # noqa: E402

from bot.core import AudioRequest, BotService, BotSettings, Reply, Status  # noqa: E402
from bot.discord.app import DiscordBot  # noqa: E402
from bot.discord.settings import DiscordSettings  # noqa: E402
from bot.telegram.app import TelegramBot  # noqa: E402
from bot.telegram.settings import TelegramSettings  # noqa: E402
from m2i_engine.config import Settings  # noqa: E402
from m2i_engine.engine import Engine  # noqa: E402
from m2i_engine.synth import SongSpec, render_song  # noqa: E402
from tests.audiofiles import encode  # noqa: E402
from tests.fakes.discord_server import FakeDiscord  # noqa: E402
from tests.fakes.telegram_server import FakeChat, FakeTelegramServer, FakeUser  # noqa: E402

GOAL_P50_MS = 20.0
SONG_BPMS = (90.0, 110.0, 128.0, 140.0)
IMAGE_SIZE = 256
ANSWER_TIMEOUT_S = 300.0


@dataclass
class Sample:
    """One request: when it left the user and reached the bot's answer, and what the service measured."""

    platform: str
    user: str
    sent_s: float
    answered_s: float | None = None
    #: Discord: seconds from INTERACTION_CREATE to the bot's acknowledgement (Discord allows 3)
    ack_s: float | None = None
    timings: Mapping[str, float] = field(default_factory=dict)

    @property
    def round_trip_ms(self) -> float:
        assert self.answered_s is not None
        return (self.answered_s - self.sent_s) * 1000

    @property
    def engine_ms(self) -> float:
        return self.timings.get("queue_ms", 0.0) + self.timings.get("engine_ms", 0.0)

    @property
    def overhead_ms(self) -> float:
        return self.round_trip_ms - self.engine_ms


class RecordingService(BotService):
    """The shared service, also keeping each answered request's timings per user, in order."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.timings: dict[tuple[str, str], list[Mapping[str, float]]] = defaultdict(list)
        self.refused: list[str] = []

    async def visualize(
        self, request: AudioRequest, *, progress: Callable[[Status], Awaitable[None] | None] | None = None
    ) -> Any:
        outcome = await super().visualize(request, progress=progress)
        if isinstance(outcome, Reply):
            self.timings[(request.platform.name, str(request.user_id))].append(outcome.timings_ms)
        else:
            self.refused.append(f"{request.platform.name}:{request.user_id}: {outcome.code}")
        return outcome


class Answers:
    """Tails a fake server's log in one task and wakes whoever waits for an answer (cheap with 50 users)."""

    def __init__(self, read: Callable[[int], tuple[int, list[tuple[Any, float]]]]) -> None:
        self._read = read
        self._seen = 0
        self.times: dict[Any, list[float]] = defaultdict(list)
        self._waiters: dict[Any, list[asyncio.Future[float]]] = defaultdict(list)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()

    async def next_answer(self, key: Any, already: int) -> float:
        """The server time of answer number ``already + 1`` for ``key``."""
        while len(self.times[key]) <= already:
            fut: asyncio.Future[float] = asyncio.get_running_loop().create_future()
            self._waiters[key].append(fut)
            await asyncio.wait_for(fut, ANSWER_TIMEOUT_S)
        return self.times[key][already]

    async def _run(self) -> None:
        while True:
            self._seen, found = self._read(self._seen)
            for key, at in found:
                self.times[key].append(at)
                for fut in self._waiters.pop(key, []):
                    if not fut.done():
                        fut.set_result(at)
            await asyncio.sleep(0.002)


def song_files() -> list[bytes]:
    return [
        encode(render_song(SongSpec(bpm=bpm, duration_s=6.0, sr=24_000, seed=i)), 24_000, "opus")
        for i, bpm in enumerate(SONG_BPMS)
    ]


# --- Telegram ------------------------------------------------------------------------------------


async def telegram_user(
    server: FakeTelegramServer,
    answers: Answers,
    user: FakeUser,
    chat: FakeChat,
    songs: list[bytes],
    count: int,
    samples: list[Sample],
) -> None:
    for k in range(count):
        server.user_sends_audio(chat, user, songs[(k + user.id) % len(songs)], kind="voice")
        sent = server.transcript[-1].t_s  # the fake records the user's message synchronously
        sample = Sample("telegram", str(user.id), sent)
        samples.append(sample)
        try:
            sample.answered_s = await answers.next_answer(chat.id, k)
        except TimeoutError:
            return  # lost: counted in the report


def telegram_answers(server: FakeTelegramServer) -> Answers:
    def read(seen: int) -> tuple[int, list[tuple[Any, float]]]:
        entries = server.transcript[seen:]
        return seen + len(entries), [
            (e.chat_id, e.t_s) for e in entries if e.who == "bot" and e.method == "sendPhoto" and e.ok
        ]

    return Answers(read)


# --- Discord -------------------------------------------------------------------------------------


async def discord_user(
    fake: FakeDiscord,
    answers: Answers,
    name: str,
    songs: list[bytes],
    count: int,
    samples: list[Sample],
    offset: int,
) -> None:
    user_id = fake.user(name)["id"]
    for k in range(count):
        rec = fake.user_invokes_slash(
            "visualize", user=name, attachment=(songs[(k + offset) % len(songs)], f"song{k}.ogg", "audio/ogg")
        )
        sample = Sample("discord", str(user_id), fake.now())
        samples.append(sample)
        try:
            sample.answered_s = await answers.next_answer(rec.id, 0)
        except TimeoutError:
            return  # lost: counted in the report
        sample.ack_s = rec.ack_latency


def discord_answers(fake: FakeDiscord) -> Answers:
    def read(seen: int) -> tuple[int, list[tuple[Any, float]]]:
        actions = fake.actions[seen:]
        return seen + len(actions), [
            (a.interaction.id, a.at)
            for a in actions
            if a.ok and a.kind == "webhook_edit" and a.files and a.interaction
        ]

    return Answers(read)


# --- the run -------------------------------------------------------------------------------------


# --- the fake side (child process): servers and users ---------------------------------------------


def fake_side(conn: Connection, users: int, songs_per_user: int, together: bool) -> None:
    """Child process: serve both fakes, play the users once the bots are up, send the samples back."""
    asyncio.run(_fake_side(conn, users, songs_per_user, together))


async def _fake_side(conn: Connection, users: int, songs_per_user: int, together: bool) -> None:
    loop = asyncio.get_running_loop()
    songs = song_files()
    tg_server = await FakeTelegramServer().start()
    dc_fake = await FakeDiscord().start(patch_discord=False)  # the bot's process points discord.py here
    conn.send(
        {
            "telegram": (tg_server.token, tg_server.base_url, tg_server.base_file_url),
            "discord": (dc_fake.token, dc_fake.api_url, dc_fake.gateway_url),
        }
    )
    tg_answers, dc_answers = telegram_answers(tg_server), discord_answers(dc_fake)
    samples: list[Sample] = []
    walls: dict[str, float] = {}
    try:
        await loop.run_in_executor(None, conn.recv)  # the bots are up
        tg_answers.start()
        dc_answers.start()
        warm: list[Sample] = []  # one request per song and platform, not counted
        tg_warm = tg_server.user("warm-up")
        dc_fake.add_user("warmup")
        await telegram_user(
            tg_server, tg_answers, tg_warm, tg_server.private_chat(tg_warm), songs, len(songs), warm
        )
        await discord_user(dc_fake, dc_answers, "warmup", songs, len(songs), warm, 0)
        conn.send("warm")
        await loop.run_in_executor(None, conn.recv)

        tg_people = [tg_server.user(f"User {i}") for i in range(users)]
        dc_names = [f"user{i}" for i in range(users)]
        for name in dc_names:
            dc_fake.add_user(name)
        load = {
            "telegram": lambda: [
                telegram_user(
                    tg_server, tg_answers, u, tg_server.private_chat(u), songs, songs_per_user, samples
                )
                for u in tg_people
            ],
            "discord": lambda: [
                discord_user(dc_fake, dc_answers, name, songs, songs_per_user, samples, i)
                for i, name in enumerate(dc_names)
            ],
        }
        phases = [("telegram", "discord")] if together else [("telegram",), ("discord",)]
        for phase in phases:
            t0 = time.perf_counter()
            await asyncio.gather(*(user for platform in phase for user in load[platform]()))
            walls[" + ".join(phase)] = time.perf_counter() - t0
        await asyncio.sleep(1.0)  # room for a duplicate answer to show up before counting
        duplicates = sum(max(0, len(v) - 1) for v in dc_answers.times.values()) + sum(
            max(0, len(tg_answers.times[tg_server.private_chat(u).id]) - songs_per_user) for u in tg_people
        )
        conn.send({"samples": samples, "walls": walls, "duplicates": duplicates})
        await loop.run_in_executor(None, conn.recv)  # the bots have stopped
    finally:
        await tg_answers.stop()
        await dc_answers.stop()
        await dc_fake.stop()
        await tg_server.close()


# --- the bot side (this process): engine, service, both bots ----------------------------------------


async def run(users: int, songs_per_user: int, *, together: bool, workers: int) -> int:
    loop = asyncio.get_running_loop()
    conn, child_conn = multiprocessing.Pipe()
    child = multiprocessing.get_context("spawn").Process(
        target=fake_side, args=(child_conn, users, songs_per_user, together), name="m2i-bench-fakes"
    )
    child.start()
    try:
        where = await loop.run_in_executor(None, conn.recv)
        tg_token, tg_base, tg_files = where["telegram"]
        dc_token, dc_api, dc_gateway = where["discord"]
        discord.http.Route.BASE = dc_api  # what FakeDiscord.point_discord_py_here does, in this process
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(dc_gateway)
        async with Engine(Settings(workers=workers, max_queue=4 * users + 16)) as engine:
            service = RecordingService(
                engine,
                BotSettings(
                    image_size=IMAGE_SIZE,
                    user_burst=songs_per_user + 2,
                    user_per_minute=60_000,
                    chat_burst=4 * users + 8,
                    chat_per_minute=600_000,
                    max_waiting=4 * users + 8,
                    max_waiting_per_user=2,
                ),
            )
            telegram = TelegramBot(
                service,
                TelegramSettings(
                    token=SecretStr(tg_token), base_url=tg_base, base_file_url=tg_files, poll_timeout_s=10
                ),
            )
            discord_bot = DiscordBot(
                service, DiscordSettings(token=SecretStr(dc_token)), guild_ready_timeout=0.05
            )
            await telegram.start()
            await discord_bot.start()
            try:
                conn.send("ready")
                await loop.run_in_executor(None, conn.recv)  # warmed up
                service.timings.clear()
                conn.send("go")
                result = await loop.run_in_executor(None, conn.recv)
            finally:
                await discord_bot.stop()
                await telegram.stop()
        conn.send("stopped")
    finally:
        child.join(30)
        if child.is_alive():
            child.kill()

    samples: list[Sample] = result["samples"]
    by_user: dict[tuple[str, str], list[Sample]] = defaultdict(list)
    for s in samples:
        by_user[(s.platform, s.user)].append(s)
    for key, group in by_user.items():  # per user, the service's n-th answer is that user's n-th request
        for sample, timings in zip(group, service.timings.get(key, []), strict=False):
            sample.timings = timings
    lost = sum(1 for s in samples if s.answered_s is None) + len(service.refused)
    duplicates = int(result["duplicates"])
    report(
        samples,
        users=users,
        songs=songs_per_user,
        workers=workers,
        walls=result["walls"],
        lost=lost,
        duplicates=duplicates,
        cache_misses=sum(1 for s in samples if "signal_ms" in s.timings),
        refused=service.refused,
    )
    return 0 if lost == 0 and duplicates == 0 else 1


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


def report(
    samples: list[Sample],
    *,
    users: int,
    songs: int,
    workers: int,
    walls: Mapping[str, float],
    lost: int,
    duplicates: int,
    cache_misses: int,
    refused: list[str],
) -> None:
    print(f"command: {shlex.join([sys.executable, *sys.argv])}")
    print(
        f"machine: {os.cpu_count()} CPU cores (load average {os.getloadavg()[0]:.1f} at the end); engine "
        f"workers {workers}; images {IMAGE_SIZE} px; fake servers and users in a child process; "
        f"{len(SONG_BPMS)} distinct 6 s songs reused: the warm-up analysed each once, the analysis cache "
        f"answered {len(samples) - cache_misses} of the {len(samples)} measured requests (the engine "
        "mostly only draws)"
    )
    print(f"load: {users} users × {songs} songs on each platform, all of a platform's users at once")
    for phase, wall_s in walls.items():
        n = users * songs * (phase.count("+") + 1)
        print(f"  {phase}: {n} requests in {wall_s:.1f} s ({n / wall_s:.1f} requests/s)")
    print()
    print(
        f"{'platform':<10}{'n':>6}{'round trip p50/p95':>22}{'engine+queue p50/p95':>24}"
        f"{'bot overhead p50/p95':>24}{'overhead/round trip':>21}   overhead p50: download / png / rest"
    )
    ok = True
    for platform in ("telegram", "discord"):
        done = [s for s in samples if s.platform == platform and s.answered_s is not None and s.timings]
        if not done:
            continue
        rt = [s.round_trip_ms for s in done]
        eng = [s.engine_ms for s in done]
        over = [s.overhead_ms for s in done]
        share = statistics.median(o / r for o, r in zip(over, rt, strict=True) if r > 0)
        dl = [s.timings.get("download_ms", 0.0) for s in done]
        png = [s.timings.get("png_ms", 0.0) for s in done]
        rest = [o - d - p for o, d, p in zip(over, dl, png, strict=True)]
        print(
            f"{platform:<10}{len(done):>6}{pct(rt, 50):>12.1f} /{pct(rt, 95):>7.1f} ms"
            f"{pct(eng, 50):>13.1f} /{pct(eng, 95):>7.1f} ms"
            f"{pct(over, 50):>13.1f} /{pct(over, 95):>7.1f} ms"
            f"{share:>20.1%}{pct(dl, 50):>14.1f} / {pct(png, 50):.1f} / {pct(rest, 50):.1f} ms"
        )
        ok &= pct(over, 50) <= GOAL_P50_MS
    acks = [s.ack_s * 1000 for s in samples if s.ack_s is not None]
    if acks:
        print(
            f"discord acknowledgements (deferral): p50 {pct(acks, 50):.1f} ms, p95 {pct(acks, 95):.1f} ms, "
            f"max {max(acks):.1f} ms (Discord allows 3000 ms)"
        )
    print()
    print(f"goal: bot overhead p50 ≤ {GOAL_P50_MS:.0f} ms on each platform — {'met' if ok else 'NOT met'}")
    print(
        f"lost answers: {lost}; duplicated answers: {duplicates}"
        + (f"; refused: {refused[:5]}" if refused else "")
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--users", type=int, default=50, help="Users per platform (default 50).")
    parser.add_argument("--songs", type=int, default=10, help="Songs each user sends (default 10).")
    parser.add_argument("--workers", type=int, default=2, help="Engine worker threads (default 2).")
    parser.add_argument(
        "--together",
        action="store_true",
        help="Load both platforms at the same time (default: one after the other, so "
        "each platform's numbers are its own).",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="Log the bots' INFO lines.")
    args = parser.parse_args()
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", module="telegram")
    logging.getLogger("discord.gateway").addFilter(_KeepAliveRace())
    return asyncio.run(run(args.users, args.songs, together=args.together, workers=args.workers))


class _KeepAliveRace(logging.Filter):
    """Drops discord.py's "Can't keep up … websocket is 41.3s behind": with a local server the heartbeat
    ACK can be handled before discord.py's keep-alive thread (waiting for the GIL) records the send,
    so it measures a whole heartbeat interval; nothing was late."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Can't keep up" not in record.getMessage()


if __name__ == "__main__":
    sys.exit(main())
