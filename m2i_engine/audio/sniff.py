"""Tell what a file is from its first bytes, because chat apps lose or fake file names.

A Telegram voice note arrives as ``voice.oga``, a Discord upload keeps whatever name the user
gave it, and a PNG renamed ``song.mp3`` must still be refused politely. So the container is
decided from content only: magic numbers for tagged formats, and a chain of valid frame headers
for the raw MPEG/ADTS streams that have none. Knowing the container also lets the decoder force
ffmpeg's demuxer instead of letting it guess on arbitrary bytes.

Offers
------
- :func:`sniff_format` — container name from the head of a file, or a typed error.
- :func:`looks_cut_off` — whether a file stops before its own end (an interrupted upload).
- :data:`DEMUXERS` — the ffmpeg demuxer that reads each container.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from m2i_engine.errors import EmptyAudioError, NotAudioError

#: ffmpeg demuxer name for each container :func:`sniff_format` can return.
DEMUXERS: dict[str, str] = {
    "wav": "wav",
    "w64": "w64",
    "aiff": "aiff",
    "caf": "caf",
    "flac": "flac",
    "mp3": "mp3",
    "aac": "aac",
    "ogg": "ogg",
    "mp4": "mov",
    "webm": "matroska",
    "matroska": "matroska",
    "amr": "amr",
    "asf": "asf",
}

#: Bytes of a file's start that are enough to sniff it (ID3 tags may need more; see ``id3_end``).
HEAD_BYTES = 64 * 1024

_ACCEPTED = "mp3, wav, flac, ogg, opus, m4a, webm or aiff"

# (offset, magic, container) for formats with a fixed signature.
_MAGIC: tuple[tuple[int, bytes, str], ...] = (
    (0, b"fLaC", "flac"),
    (0, b"OggS", "ogg"),
    (0, b"caff", "caf"),
    (0, b"#!AMR", "amr"),
    (0, b"\x30\x26\xb2\x75\x8e\x66\xcf\x11", "asf"),
    (0, b"riff\x2e\x91\xcf\x11", "w64"),
)
_RIFF_FORMS = {b"WAVE": "wav"}  # RIFF/RF64/BW64 <size> <form>
_IFF_FORMS = {b"AIFF": "aiff", b"AIFC": "aiff"}
_MP4_BOXES = (b"ftyp", b"moov", b"mdat", b"free", b"wide", b"skip")

# Things people send by mistake, named so the refusal can say what the file was.
_NOT_AUDIO: tuple[tuple[int, bytes, str], ...] = (
    (0, b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (0, b"\xff\xd8\xff", "a JPEG image"),
    (0, b"GIF8", "a GIF image"),
    (0, b"BM", "a bitmap image"),
    (0, b"%PDF", "a PDF document"),
    (0, b"PK\x03\x04", "a ZIP archive or Office document"),
    (0, b"PK\x05\x06", "a ZIP archive"),
    (0, b"Rar!", "a RAR archive"),
    (0, b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
    (0, b"\x1f\x8b", "a gzip archive"),
    (0, b"\x7fELF", "a program"),
    (0, b"MZ", "a Windows program"),
    (0, b"MThd", "a MIDI file (notes, not sound)"),
)
_RIFF_NOT_AUDIO = {b"WEBP": "a WebP image", b"AVI ": "an AVI video"}

# MPEG audio header tables: bitrate (kbit/s) by [version is MPEG-1][layer][index].
_MPEG_BITRATES = {
    (True, 1): (0, 32, 64, 96, 128, 160, 192, 224, 256, 288, 320, 352, 384, 416, 448),
    (True, 2): (0, 32, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384),
    (True, 3): (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320),
    (False, 1): (0, 32, 48, 56, 64, 80, 96, 112, 128, 144, 160, 176, 192, 224, 256),
    (False, 2): (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
    (False, 3): (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
}
_MPEG_RATES = {3: (44_100, 48_000, 32_000), 2: (22_050, 24_000, 16_000), 0: (11_025, 12_000, 8_000)}
_SYNC = re.compile(rb"\xff[\xe0-\xff]")
_FRAMES_TO_CONFIRM = 4
_SYNC_SEARCH_BYTES = 16 * 1024


def sniff_format(head: bytes) -> str:
    """Name the container of a file from its first bytes (:data:`HEAD_BYTES` are plenty).

    Returns one of the keys of :data:`DEMUXERS` (``'wav'``, ``'mp3'``, ``'flac'``, ``'ogg'``,
    ``'mp4'``, ``'webm'``, ``'aiff'``, ``'caf'`` …). Raises :class:`EmptyAudioError` for no bytes
    and :class:`NotAudioError` for anything else, naming what it looks like when it can.
    """
    head = bytes(head)
    if not head:
        raise EmptyAudioError()
    start = id3_end(head)
    if start:
        # ID3v2 tags precede mp3 (and sometimes AAC/FLAC) streams; a tag longer than the head
        # is itself strong evidence of an mp3.
        return _sniff_after_id3(head[start:])
    found = _by_signature(head) or _by_frame_sync(head)
    if found:
        return found
    raise NotAudioError(_not_audio_message(head))


def id3_end(head: bytes) -> int:
    """Offset just past the ID3v2 tags at the start of ``head`` (0 if there are none).

    May exceed ``len(head)`` when a tag (usually embedded cover art) is longer than the head.
    """
    pos = 0
    while head[pos : pos + 3] == b"ID3" and len(head) >= pos + 10:
        size_bytes = head[pos + 6 : pos + 10]
        if any(b & 0x80 for b in size_bytes):
            break  # not a synchsafe size: not a real tag
        size = (size_bytes[0] << 21) | (size_bytes[1] << 14) | (size_bytes[2] << 7) | size_bytes[3]
        footer = 10 if head[pos + 5] & 0x10 else 0
        pos += 10 + size + footer
    return pos


def looks_cut_off(container: str, *, head: bytes, tail: bytes, size: int) -> bool:
    """True when a file visibly stops before its own end (an interrupted upload or copy).

    ffmpeg quietly decodes the bytes that are there, and for WAV/AIFF and Ogg it then reports the
    shortened length as the duration. This tells a cut-off upload from a genuinely short one:
    WAV/AIFF headers declare the total size, and a complete Ogg stream ends with an end-of-stream
    page. ``tail`` is the file's last bytes (:data:`HEAD_BYTES` are plenty).
    """
    if container in ("wav", "aiff"):
        declared = declared_file_size(head)
        return declared is not None and declared > size + 1  # +1: odd chunks are padded
    if container == "ogg":
        return not _ogg_ends_cleanly(tail)
    return False


def declared_file_size(head: bytes) -> int | None:
    """Total bytes a WAV (RIFF) or AIFF (IFF) header says the file has, if it says so.

    Streaming writers leave 0 or 0xFFFFFFFF there: unknown.
    """
    if len(head) < 12 or head[:4] not in (b"RIFF", b"FORM"):
        return None
    size = int.from_bytes(head[4:8], "little" if head[:4] == b"RIFF" else "big")
    if size == 0 or size >= 0xFFFFFFF0:
        return None
    return size + 8


# --- private helpers ---------------------------------------------------------------------------


def _sniff_after_id3(rest: bytes) -> str:
    if len(rest) < 4:
        return "mp3"
    return _by_signature(rest) or _by_frame_sync(rest) or "mp3"


def _by_signature(head: bytes) -> str | None:
    for offset, magic, name in _MAGIC:
        if head[offset : offset + len(magic)] == magic:
            return name
    if head[:4] in (b"RIFF", b"RF64", b"BW64"):
        return _RIFF_FORMS.get(head[8:12])
    if head[:4] == b"FORM":
        return _IFF_FORMS.get(head[8:12])
    if head[4:8] in _MP4_BOXES:
        return "mp4"
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return "webm" if b"webm" in head[:64] else "matroska"
    return None


def _ogg_ends_cleanly(tail: bytes) -> bool:
    """True when ``tail`` ends exactly with a complete Ogg page flagged end-of-stream."""
    pos = tail.rfind(b"OggS")
    while pos >= 0:
        if pos + 27 <= len(tail) and tail[pos + 4] == 0:
            n_segments = tail[pos + 26]
            table = tail[pos + 27 : pos + 27 + n_segments]
            end = pos + 27 + n_segments + sum(table)
            if len(table) == n_segments and end == len(tail):
                return bool(tail[pos + 5] & 0x04)
        pos = tail.rfind(b"OggS", 0, pos)
    return False


def _by_frame_sync(head: bytes) -> str | None:
    """Find a run of consistent MPEG-audio or ADTS frame headers (raw streams have no magic).

    Starts are searched in the first :data:`_SYNC_SEARCH_BYTES` only (junk before the first frame
    is short in real files), and every frame of the run must agree on version, layer and rate,
    so random bytes essentially never pass.
    """
    for match in _SYNC.finditer(head, 0, _SYNC_SEARCH_BYTES):
        pos = match.start()
        for kind, read_header in (("mp3", _mpeg_header), ("aac", _adts_header)):
            if _frames_chain(head, pos, read_header):
                return kind
    return None


def _frames_chain(head: bytes, pos: int, read_header: Callable[[bytes, int], _Header | None]) -> bool:
    """True when ``_FRAMES_TO_CONFIRM`` consistent frames follow each other from ``pos``.

    A run that reaches the end of ``head`` after two good frames counts, so tiny clips sniff.
    """
    first = read_header(head, pos)
    if first is None:
        return False
    seen, length = 1, first[0]
    while seen < _FRAMES_TO_CONFIRM:
        pos += length
        if pos >= len(head) and seen >= 2:
            return True
        header = read_header(head, pos)
        if header is None or header[1] != first[1]:
            return False
        seen, length = seen + 1, header[0]
    return True


#: (frame length in bytes, fields every frame of one stream shares)
_Header = tuple[int, tuple[int, ...]]


def _mpeg_header(head: bytes, pos: int) -> _Header | None:
    """The MPEG-1/2/2.5 layer I–III frame header at ``pos``, or None if none is there."""
    if pos + 4 > len(head):
        return None
    b1, b2, b3 = head[pos + 1], head[pos + 2], head[pos + 3]
    if head[pos] != 0xFF or b1 & 0xE0 != 0xE0:
        return None
    version, layer_bits = (b1 >> 3) & 3, (b1 >> 1) & 3
    bitrate_idx, rate_idx = b2 >> 4, (b2 >> 2) & 3
    if version == 1 or layer_bits == 0 or bitrate_idx in (0, 15) or rate_idx == 3 or b3 & 3 == 2:
        return None
    layer = 4 - layer_bits
    mpeg1 = version == 3
    bitrate = _MPEG_BITRATES[(mpeg1, layer)][bitrate_idx] * 1000
    rate = _MPEG_RATES[version][rate_idx]
    padding = (b2 >> 1) & 1
    if layer == 1:
        length = (12 * bitrate // rate + padding) * 4
    else:
        length = (144 if (layer == 2 or mpeg1) else 72) * bitrate // rate + padding
    return length, (version, layer, rate_idx)


def _adts_header(head: bytes, pos: int) -> _Header | None:
    """The ADTS (raw AAC) frame header at ``pos``, or None if none is there."""
    if pos + 7 > len(head) or head[pos] != 0xFF or head[pos + 1] & 0xF6 != 0xF0:
        return None
    profile, rate_idx = head[pos + 2] >> 6, (head[pos + 2] >> 2) & 0xF
    channels = ((head[pos + 2] & 1) << 2) | (head[pos + 3] >> 6)
    if rate_idx > 12 or profile == 3:
        return None
    length = ((head[pos + 3] & 3) << 11) | (head[pos + 4] << 3) | (head[pos + 5] >> 5)
    return (length, (profile, rate_idx, channels)) if length >= 7 else None


def _not_audio_message(head: bytes) -> str | None:
    what = _what_it_is(head)
    if what is None:
        return None  # NotAudioError's default message
    return f"That file is {what}, not audio — send a song or voice note ({_ACCEPTED})."


def _what_it_is(head: bytes) -> str | None:
    for offset, magic, name in _NOT_AUDIO:
        if head[offset : offset + len(magic)] == magic:
            return name
    if head[:4] == b"RIFF" and head[8:12] in _RIFF_NOT_AUDIO:
        return _RIFF_NOT_AUDIO[head[8:12]]
    if _looks_like_text(head[:4096]):
        lower = head[:512].lstrip().lower()
        return "a web page" if lower.startswith((b"<!doctype html", b"<html")) else "text"
    return None


def _looks_like_text(sample: bytes) -> bool:
    if b"\x00" in sample:
        return False
    try:
        sample.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(sample) - 4:  # a character cut at the end of the sample is fine
            return False
    return True
