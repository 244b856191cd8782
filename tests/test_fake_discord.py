"""Proves the local fake Discord is good enough to test a real bot: the unmodified discord.py client logs in,
syncs commands, answers interactions, survives rate limits and reconnects against it.

Each test defines a throwaway ``discord.Client`` + ``CommandTree`` (not the product bot).
"""

from __future__ import annotations

import asyncio
import io
import struct
import zlib
from collections.abc import Callable
from typing import TYPE_CHECKING

import aiohttp
import pytest

pytest.importorskip("discord")
import discord
from discord import app_commands

if TYPE_CHECKING:
    from tests.fakes.discord_server import FakeDiscord

pytest_plugins = ["tests.fakes.discord_server"]  # provides the fake_discord fixture

WEBHOOK_ROUTE = "POST /webhooks/{application_id}/{interaction_token}"
MESSAGES_ROUTE = "POST /channels/{channel_id}/messages"


def make_png(width: int = 4, height: int = 3) -> bytes:
    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    raw = b"".join(b"\x00" + b"\xff\x40\x00" * width for _ in range(height))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
    )


def make_ogg_opus(seconds: float) -> bytes:
    """A tiny Ogg Opus stream (header pages + one audio page whose granule position encodes the length)."""

    def page(granule: int, seq: int, packet: bytes, header_type: int) -> bytes:
        return (
            b"OggS"
            + bytes([0, header_type])
            + struct.pack("<qIII", granule, 0x4D32, seq, 0)
            + bytes([1, len(packet)])
            + packet
        )

    head = b"OpusHead" + bytes([1, 1]) + struct.pack("<HIhB", 312, 48_000, 0, 0)
    tags = b"OpusTags" + struct.pack("<I", 3) + b"m2i" + struct.pack("<I", 0)
    return (
        page(0, 0, head, 2) + page(0, 1, tags, 0) + page(int(seconds * 48_000) + 312, 2, bytes(range(120)), 4)
    )


PNG = make_png()
OGG = make_ogg_opus(2.5)


def make_client(*, message_content: bool = True) -> tuple[discord.Client, app_commands.CommandTree]:
    intents = discord.Intents.default()
    intents.message_content = message_content
    client = discord.Client(intents=intents, guild_ready_timeout=0.05)
    return client, app_commands.CommandTree(client)


async def eventually(check: Callable[[], bool], timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def test_client_logs_in_and_reaches_ready(fake_discord: FakeDiscord, tmp_path) -> None:
    fake = fake_discord
    client, _ = make_client()
    async with fake.run_client(client):
        assert client.user is not None and client.user.id == fake.application_id
        assert client.application_id == fake.application_id
        guild = client.get_guild(fake.guild_id)
        assert guild is not None and guild.name == "m2i test guild"
        assert {c.name for c in guild.text_channels} == {"general", "music"}
        assert [c.name for c in guild.voice_channels] == ["Lounge"]
        conn = fake.connections[0]
        assert conn.handshake == "identify" and conn.path == "/gateway"
        assert conn.query["v"] == "10" and conn.query["encoding"] == "json"
        assert conn.query["compress"] in ("zlib-stream", "zstd-stream")
        assert conn.identify is not None and conn.identify["intents"] == client.intents.value
        await eventually(lambda: conn.heartbeats >= 1 and client.latency != float("inf"))

    routes = [e.route for e in fake.transcript.http()]
    assert routes[:2] == ["GET /users/@me", "GET /oauth2/applications/@me"]
    sent = [f.t for f in fake.transcript.frames() if f.direction == "to_bot" and f.op == 0]
    assert sent[:2] == ["READY", "GUILD_CREATE"]
    assert all(f.compressed_size for f in fake.transcript.frames() if f.direction == "to_bot")
    assert fake.connections[0].closed_by == "client"  # discord.py puts 4000 on the wire even on close()
    assert not fake.unhandled_requests

    out = fake.transcript.write_markdown(tmp_path / "transcript.md", title="login")
    text = out.read_text()
    assert "IDENTIFY" in text and "READY" in text and "GET /api/v10/users/@me" in text
    assert fake.token not in text  # tokens are redacted


async def test_command_sync_records_declared_options(fake_discord: FakeDiscord) -> None:
    fake = fake_discord
    client, tree = make_client()
    guild = discord.Object(fake.guild_id)

    @app_commands.command(name="draw", description="Draw what a song sounds like")
    @app_commands.describe(song="An audio file", style="Visual style", seed="Random seed")
    @app_commands.choices(
        style=[app_commands.Choice(name="Neon", value="neon"), app_commands.Choice(name="Ink", value="ink")]
    )
    async def draw(
        interaction: discord.Interaction,
        song: discord.Attachment,
        style: str = "neon",
        seed: app_commands.Range[int, 0, 9999] = 0,
    ) -> None:
        await interaction.response.send_message("ok")

    @app_commands.context_menu(name="Draw this")
    async def draw_this(interaction: discord.Interaction, message: discord.Message) -> None:
        await interaction.response.send_message("ok")

    tree.add_command(draw, guild=guild)
    tree.add_command(draw_this)
    async with fake.run_client(client):
        guild_synced = await tree.sync(guild=guild)
        global_synced = await tree.sync()
        with pytest.raises(discord.HTTPException) as bad:
            await client.http.bulk_upsert_guild_commands(
                fake.application_id,
                fake.guild_id,
                payload=[{"name": "Bad Name", "description": "", "type": 1}],
            )

    cmd = fake.registered_command("draw", guild=True)
    assert [c.id for c in guild_synced] == [int(cmd["id"])]
    opts = {o["name"]: o for o in cmd["options"]}
    assert list(opts) == ["song", "style", "seed"]
    assert opts["song"]["type"] == 11 and opts["song"]["required"] is True
    assert opts["style"]["type"] == 3 and opts["style"].get("required", False) is False
    assert [c["value"] for c in opts["style"]["choices"]] == ["neon", "ink"]
    assert (opts["seed"]["type"], opts["seed"]["min_value"], opts["seed"]["max_value"]) == (4, 0, 9999)
    menu = fake.registered_command("Draw this", type=3, guild=False)
    assert [c.name for c in global_synced] == ["Draw this"] and "guild_id" not in menu
    assert bad.value.status == 400 and bad.value.code == 50035  # validated like Discord, registry untouched
    assert [a.status for a in fake.actions_of("commands_sync", ok=False)] == [200, 200, 400]


async def test_slash_with_attachment_is_deferred_then_answered_with_png_and_embed(
    fake_discord: FakeDiscord,
) -> None:
    fake = fake_discord
    client, tree = make_client()
    guild = discord.Object(fake.guild_id)
    heard: dict[str, object] = {}

    @tree.command(name="draw", description="Draw a song", guild=guild)
    async def draw(interaction: discord.Interaction, song: discord.Attachment, style: str = "neon") -> None:
        await interaction.response.defer(thinking=True)
        heard["audio"] = await song.read()
        heard["meta"] = (song.filename, song.content_type, song.size, song.ephemeral)
        embed = discord.Embed(title=f"{style} painting", description=f"{song.size} bytes heard")
        embed.set_image(url="attachment://art.png")
        await interaction.followup.send(embed=embed, file=discord.File(io.BytesIO(PNG), "art.png"))

    async with fake.run_client(client):
        await tree.sync(guild=guild)
        rec = fake.user_invokes_slash("draw", {"style": "ink"}, attachment=(OGG, "my song.ogg", "audio/ogg"))
        latency = await rec.wait_acknowledged()
        followup = await fake.wait_for(lambda a: a.kind == "followup" and a.interaction is rec)

    assert rec.ack_type == 5 and 0 <= latency < 3.0
    assert heard["audio"] == OGG
    assert heard["meta"] == ("my_song.ogg", "audio/ogg", len(OGG), True)
    assert followup.file("art.png").data == PNG
    msg = followup.message
    assert msg is not None and followup.edited_original  # the first follow-up replaced "is thinking…"
    att = msg["attachments"][0]
    assert (att["filename"], att["content_type"], att["size"], att["width"], att["height"]) == (
        "art.png", "image/png", len(PNG), 4, 3,
    )  # fmt: skip
    assert fake.cdn_file(att) == PNG
    embed = msg["embeds"][0]
    assert embed["title"] == "ink painting" and embed["image"]["url"] == att["url"]
    assert msg["interaction_metadata"]["name"] == "draw" and int(msg["id"]) == rec.original_message_id
    assert fake.dangling_loading_messages() == []
    assert any(a.kind == "cdn_download" for a in fake.actions)


async def test_voice_message_reaches_on_message_and_downloads_from_cdn(fake_discord: FakeDiscord) -> None:
    fake = fake_discord
    client, _ = make_client()
    received: asyncio.Queue[tuple[discord.Message, bytes]] = asyncio.Queue()

    @client.event
    async def on_message(message: discord.Message) -> None:
        if not message.author.bot:
            await received.put((message, await message.attachments[0].read()))

    async with fake.run_client(client):
        fake.user_uploads("music", "alice", OGG, "voice-message.ogg", "audio/ogg", voice=True)
        voice, voice_bytes = await asyncio.wait_for(received.get(), 5)
        fake.user_uploads(
            "general", "bob", OGG, "demo.ogg", "audio/ogg", content="what is this?", mention_bot=True
        )
        upload, upload_bytes = await asyncio.wait_for(received.get(), 5)

    assert (
        voice.flags.voice and getattr(voice.channel, "name", None) == "music" and voice.author.name == "alice"
    )
    att = voice.attachments[0]
    assert att.is_voice_message() and att.duration == pytest.approx(2.5)
    assert att.waveform and att.content_type == "audio/ogg" and att.size == len(OGG)
    assert voice_bytes == OGG
    assert upload.content == f"<@{fake.application_id}> what is this?" and client.user in upload.mentions
    assert upload_bytes == OGG and not upload.flags.voice


async def test_message_content_intent_is_enforced(fake_discord: FakeDiscord) -> None:
    fake = fake_discord
    client, _ = make_client(message_content=False)
    seen: asyncio.Queue[discord.Message] = asyncio.Queue()

    @client.event
    async def on_message(message: discord.Message) -> None:
        await seen.put(message)

    async with fake.run_client(client):
        fake.user_uploads("general", "alice", OGG, "a.ogg", "audio/ogg", content="hidden")
        fake.user_uploads("general", "alice", OGG, "b.ogg", "audio/ogg", content="hi", mention_bot=True)
        plain = await asyncio.wait_for(seen.get(), 5)
        mentioned = await asyncio.wait_for(seen.get(), 5)
    assert (plain.content, plain.attachments) == ("", [])
    assert mentioned.attachments[0].filename == "b.ogg" and mentioned.content.endswith("hi")


async def test_button_press_reaches_its_callback(fake_discord: FakeDiscord) -> None:
    fake = fake_discord
    client, tree = make_client()
    guild = discord.Object(fake.guild_id)
    pressed: list[str] = []

    class Menu(discord.ui.View):
        @discord.ui.button(label="Later", custom_id="later")
        async def later(self, interaction: discord.Interaction, button: discord.ui.Button[Menu]) -> None:
            await interaction.response.defer()  # type 6: deferred update of the button's message
            await interaction.edit_original_response(content="Choose (later pressed)")
            pressed.append("later")

        @discord.ui.button(label="Redraw", custom_id="redraw", style=discord.ButtonStyle.primary)
        async def redraw(self, interaction: discord.Interaction, button: discord.ui.Button[Menu]) -> None:
            await interaction.response.edit_message(content="Redrawing…", view=None)  # type 7
            pressed.append("redraw")

    @tree.command(name="menu", description="Show choices", guild=guild)
    async def menu(interaction: discord.Interaction) -> None:
        await interaction.response.send_message("Choose", view=Menu(timeout=30))

    async with fake.run_client(client):
        await tree.sync(guild=guild)
        rec = fake.user_invokes_slash("menu")
        shown = await fake.wait_for(lambda a: a.kind == "interaction_response" and a.interaction is rec)
        assert shown.message is not None
        assert [b["custom_id"] for b in shown.message["components"][0]["components"]] == ["later", "redraw"]
        later = fake.user_presses_button(shown, "later")
        edit = await fake.wait_for(lambda a: a.kind == "webhook_edit" and a.interaction is later)
        press = fake.user_presses_button(shown, "redraw")
        update = await fake.wait_for(lambda a: a.kind == "interaction_response" and a.interaction is press)
        await eventually(lambda: len(pressed) == 2)

    assert (later.ack_type, press.ack_type, update.callback_type) == (6, 7, 7)
    assert edit.edited_original and edit.message is not None and edit.message["id"] == shown.message["id"]
    after = fake.message(shown)
    assert after["content"] == "Redrawing…" and after["components"] == [] and after["edited_timestamp"]
    assert pressed == ["later", "redraw"]
    with pytest.raises(LookupError):
        fake.user_presses_button(shown, "redraw")  # the buttons are gone


async def test_autosharded_client_asks_gateway_bot(fake_discord: FakeDiscord) -> None:
    fake = fake_discord
    client = discord.AutoShardedClient(intents=discord.Intents.default(), guild_ready_timeout=0.05)
    async with fake.run_client(client):
        assert client.shard_count == 1 and client.get_guild(fake.guild_id) is not None
    assert "GET /gateway/bot" in [e.route for e in fake.transcript.http()]
    identify = fake.connections[0].identify
    assert identify is not None and identify["shard"] == [0, 1]


async def test_429_on_followup_is_retried_and_the_message_arrives_once(fake_discord: FakeDiscord) -> None:
    fake = fake_discord
    client, tree = make_client()
    guild = discord.Object(fake.guild_id)

    @tree.command(name="ping", description="Ping", guild=guild)
    async def ping(interaction: discord.Interaction) -> None:
        await interaction.response.defer()
        await interaction.followup.send("pong")
        await interaction.followup.send("pong again")

    async with fake.run_client(client):
        await tree.sync(guild=guild)
        rule = fake.inject_rate_limit(WEBHOOK_ROUTE, retry_after=0.3)
        rec = fake.user_invokes_slash("ping")
        await fake.wait_for(lambda a: a.kind == "followup" and a.content == "pong again")

    attempts = [e for e in fake.transcript.http() if e.route == WEBHOOK_ROUTE]
    assert [e.status for e in attempts] == [429, 200, 200] and rule.hits == 1
    assert attempts[0].response_json["retry_after"] == 0.3
    assert attempts[0].response_headers["X-RateLimit-Remaining"] == "0"
    assert attempts[1].at - attempts[0].at >= 0.3  # discord.py waited as told
    contents = [m["content"] for m in fake.messages_in("general")]
    assert contents == ["pong", "pong again"]  # the first replaced the deferred message, each exactly once
    assert [a.content for a in rec.actions if a.kind == "followup"] == ["pong", "pong again"]


async def test_global_429_5xx_and_route_buckets_are_honoured(fake_discord: FakeDiscord) -> None:
    fake = fake_discord
    client, _ = make_client()
    async with fake.run_client(client):
        channel = client.get_channel(int(fake.channel("general")["id"]))
        assert isinstance(channel, discord.TextChannel)
        fake.inject_error(MESSAGES_ROUTE, 502)
        fake.inject_rate_limit(MESSAGES_ROUTE, retry_after=0.2, is_global=True)
        sent = await channel.send("hello")
        statuses = [e.status for e in fake.transcript.http() if e.route == MESSAGES_ROUTE]
        assert statuses == [502, 429, 200] and sent.content == "hello"

        fake.bucket_limit, fake.bucket_window = 2, 0.4  # a fresh bucket: #music is another major parameter
        music = client.get_channel(int(fake.channel("music")["id"]))
        assert isinstance(music, discord.TextChannel)
        started = asyncio.get_running_loop().time()
        await asyncio.gather(*(music.send(f"burst {i}") for i in range(5)))
        elapsed = asyncio.get_running_loop().time() - started
        bursts = [e for e in fake.transcript.http() if e.route == MESSAGES_ROUTE][3:]
        assert [e.status for e in bursts] == [200] * 5  # discord.py waited on X-RateLimit-* instead of a 429
        assert elapsed >= 0.7  # 5 sends at 2 per 0.4 s need two bucket resets

        fake.upload_limit = 1000
        with pytest.raises(discord.HTTPException) as too_big:
            await channel.send(file=discord.File(io.BytesIO(b"x" * 2000), "big.bin"))
    assert (too_big.value.status, too_big.value.code) == (413, 40005)
    assert [m["content"] for m in fake.messages_in("general")] == ["hello"]
    assert sorted(m["content"] for m in fake.messages_in("music")) == [f"burst {i}" for i in range(5)]


@pytest.mark.parametrize(
    ("mode", "handshake", "path"),
    [
        ("close", "resume", "/gateway-resume"),
        ("reconnect", "resume", "/gateway-resume"),
        ("invalid_session_resumable", "resume", "/gateway-resume"),
        ("invalid_session", "identify", "/gateway"),
    ],
)
async def test_forced_reconnect_mid_conversation(
    fake_discord: FakeDiscord, mode: str, handshake: str, path: str
) -> None:
    fake = fake_discord
    client, tree = make_client()
    guild = discord.Object(fake.guild_id)
    entered, release = asyncio.Event(), asyncio.Event()
    heard: list[str] = []

    @tree.command(name="slow", description="Takes a while", guild=guild)
    async def slow(interaction: discord.Interaction) -> None:
        await interaction.response.defer(thinking=True)
        entered.set()
        await release.wait()
        await interaction.followup.send("done")

    @client.event
    async def on_message(message: discord.Message) -> None:
        if not message.author.bot:
            heard.append(message.content)

    async with fake.run_client(client):
        await tree.sync(guild=guild)
        rec = fake.user_invokes_slash("slow")
        await asyncio.wait_for(entered.wait(), 5)
        await fake.force_reconnect(mode, wait=False)  # type: ignore[arg-type]
        fake.user_sends("general", "bob", "sent while reconnecting")
        await fake.wait_for_handshakes(2)
        release.set()
        await fake.wait_for(lambda a: a.kind == "followup" and a.interaction is rec)
        fake.user_sends("general", "alice", "after the reconnect")
        later = fake.user_invokes_slash("slow")
        await later.wait_acknowledged()
        await eventually(lambda: len(heard) >= 2)

    assert heard == ["sent while reconnecting", "after the reconnect"]  # each exactly once
    first, second = fake.connections[:2]
    assert first.closed_at is not None and len(fake.connections) == 2
    assert (second.handshake, second.path) == (handshake, path)
    if handshake == "resume":
        assert second.session_id == first.session_id and second.resume_seq is not None
    else:
        assert second.session_id != first.session_id
    assert rec.original_message_id is not None and fake.message(rec.original_message_id)["content"] == "done"


async def test_context_menu_on_a_message(fake_discord: FakeDiscord) -> None:
    fake = fake_discord
    client, tree = make_client()
    guild = discord.Object(fake.guild_id)
    got: list[tuple[int, str]] = []

    @app_commands.context_menu(name="Draw this")
    async def draw_this(interaction: discord.Interaction, message: discord.Message) -> None:
        got.append((message.id, message.attachments[0].filename))
        await interaction.response.send_message("On it", ephemeral=True)

    tree.add_command(draw_this, guild=guild)
    async with fake.run_client(client):
        await tree.sync(guild=guild)
        target = fake.user_uploads("music", "bob", OGG, "tune.ogg", "audio/ogg", content="listen")
        rec = fake.user_invokes_context_menu("Draw this", target)
        reply = await fake.wait_for(lambda a: a.interaction is rec)

    assert got == [(int(target["id"]), "tune.ogg")]
    assert reply.message is not None and reply.message["flags"] & 64  # ephemeral
    assert reply.message["interaction_metadata"]["target_message_id"] == target["id"]


async def test_modal_round_trip(fake_discord: FakeDiscord) -> None:
    fake = fake_discord
    client, tree = make_client()
    guild = discord.Object(fake.guild_id)
    titles: list[str] = []

    class Rename(discord.ui.Modal, title="Name your painting"):
        name: discord.ui.TextInput[Rename] = discord.ui.TextInput(label="Title", custom_id="title")

        async def on_submit(self, interaction: discord.Interaction) -> None:
            titles.append(self.name.value)
            await interaction.response.send_message(f"Saved {self.name.value}")

    @tree.command(name="rename", description="Rename", guild=guild)
    async def rename(interaction: discord.Interaction) -> None:
        await interaction.response.send_modal(Rename())

    async with fake.run_client(client):
        await tree.sync(guild=guild)
        rec = fake.user_invokes_slash("rename")
        await rec.wait_acknowledged()
        submit = fake.user_submits_modal(rec, {"title": "Blue hour"})
        reply = await fake.wait_for(lambda a: a.interaction is submit)

    assert rec.ack_type == 9 and rec.modal is not None and rec.modal["title"] == "Name your painting"
    assert titles == ["Blue hour"] and reply.content == "Saved Blue hour"


async def test_late_acknowledgement_is_refused_like_discord(fake_discord: FakeDiscord) -> None:
    fake = fake_discord
    fake.ack_deadline = 0.2
    client, tree = make_client()
    guild = discord.Object(fake.guild_id)
    codes: list[int] = []

    @tree.command(name="lazy", description="Too slow", guild=guild)
    async def lazy(interaction: discord.Interaction) -> None:
        try:
            await interaction.followup.send("before any ack")
        except discord.NotFound as exc:
            codes.append(exc.code)
        await asyncio.sleep(0.4)
        try:
            await interaction.response.send_message("too late")
        except discord.NotFound as exc:
            codes.append(exc.code)

    async with fake.run_client(client):
        await tree.sync(guild=guild)
        rec = fake.user_invokes_slash("lazy")
        await eventually(lambda: len(codes) == 2)

    assert codes == [10015, 10062]  # Unknown Webhook before the ack, Unknown interaction after 0.2 s
    assert rec.acked_at is None and rec.ack_latency is None and "too late" in rec.refused[-1]


async def test_raw_gateway_plain_json_and_close_codes(fake_discord: FakeDiscord) -> None:
    fake = fake_discord
    fake.allowed_privileged_intents = 0
    url = fake.gateway_url + "?v=10&encoding=json"
    async with aiohttp.ClientSession() as session:
        for token, intents, code in ((fake.token + "x", 0, 4004), (fake.token, 1 << 15, 4014)):
            async with session.ws_connect(url) as ws:
                assert (await ws.receive_json())["op"] == 10
                await ws.send_json({"op": 2, "d": {"token": token, "intents": intents, "properties": {}}})
                closed = await ws.receive()
                assert closed.type is aiohttp.WSMsgType.CLOSE and closed.data == code
        async with session.ws_connect(url) as ws:
            hello = await ws.receive()
            assert hello.type is aiohttp.WSMsgType.TEXT  # no compress parameter: plain text frames
            await ws.send_json({"op": 2, "d": {"token": fake.token, "intents": 513, "properties": {}}})
            ready = await ws.receive_json()
            assert (ready["t"], ready["s"], ready["d"]["resume_gateway_url"]) == (
                "READY",
                1,
                fake.resume_gateway_url,
            )
            assert (await ws.receive_json())["t"] == "GUILD_CREATE"
            await ws.send_json({"op": 1, "d": 2})
            assert (await ws.receive_json())["op"] == 11
