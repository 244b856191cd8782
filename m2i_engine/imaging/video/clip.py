"""Which part of the song a video shows, decoded at a rate fit to be heard (the analysis rate is not).

Without a start the clip is the song's most representative stretch (the same energy-median window the
analysis uses, at most :data:`~m2i_engine.options.MAX_VIDEO_S` long); with one, the song is decoded
whole (within the usual limits) and cut there. Decoding goes through
:func:`~m2i_engine.audio.decode_audio`, so bad input fails exactly as it does for a picture.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import soundfile as sf

from m2i_engine.audio import decode_audio
from m2i_engine.config import AudioLimits
from m2i_engine.errors import InvalidOptionError
from m2i_engine.options import MAX_VIDEO_S
from m2i_engine.tags import AudioInfo

#: the video's sound: mono at CD rate
AUDIO_SR = 44_100


@dataclass(frozen=True)
class Clip:
    """The clip's samples (mono float32 at ``sample_rate``), where it starts in the song, and the song's
    :class:`AudioInfo` with ``analysed_s`` the clip's length."""

    samples: np.ndarray
    sample_rate: int
    start_s: float
    info: AudioInfo

    @property
    def length_s(self) -> float:
        return self.samples.size / self.sample_rate

    def wav_bytes(self) -> bytes:
        """The clip as a 24-bit WAV, to analyse it with the same pipeline as an upload.

        The same clip always gives the same bytes (the analysis cache is keyed by their hash): PCM, not
        float, because libsndfile stamps float WAVs with a PEAK chunk holding the time of writing. 24 bits
        keep the rounding 144 dB down, far below anything the analysis hears."""
        buf = io.BytesIO()
        sf.write(buf, self.samples, self.sample_rate, format="WAV", subtype="PCM_24")
        return buf.getvalue()


def load_clip(
    data: bytes,
    *,
    limits: AudioLimits,
    start: float | None = None,
    length: float | None = None,
    sample_rate: int = AUDIO_SR,
) -> Clip:
    """Decode the part of ``data`` a video shows; raises the decoder's ``InputError``\\ s, and
    ``InvalidOptionError`` for a start at or past the song's end."""
    want = min(length or MAX_VIDEO_S, MAX_VIDEO_S)
    if start is None:
        audio = decode_audio(
            data, limits=limits.model_copy(update={"analysis_s": want}), target_sr=sample_rate
        )
        samples, start_s = audio.samples, float(audio.window_s[0])
    else:
        whole = limits.model_copy(update={"analysis_s": limits.max_duration_s + 60.0})
        audio = decode_audio(data, limits=whole, target_sr=sample_rate)
        song_s = audio.samples.size / sample_rate
        latest = max(song_s - limits.min_duration_s, 0.0)
        if start > latest:
            raise InvalidOptionError(
                f"The clip can't start at {start:g} s: the song is only {song_s:.1f} s "
                f"long (start at most {latest:.1f} s)."
            )
        i0 = round(start * sample_rate)
        samples, start_s = audio.samples[i0 : i0 + round(want * sample_rate)].copy(), float(start)
    info = audio.info.model_copy(update={"analysed_s": round(samples.size / sample_rate, 3)})
    return Clip(
        samples=np.ascontiguousarray(samples, dtype=np.float32),
        sample_rate=sample_rate,
        start_s=round(start_s, 3),
        info=info,
    )
