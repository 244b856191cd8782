"""Audio in: decode every song or voice note a chat app sends, within limits, with clear errors.

``decode_audio`` is the one entry point the engine calls; ``sniff_format`` names a container from
its bytes; ``representative_window`` picks the analysed part of a long song.
"""

from m2i_engine.audio.decode import DecodedAudio, decode_audio, read_audio_bytes
from m2i_engine.audio.sniff import sniff_format
from m2i_engine.audio.windows import representative_window

__all__ = ["DecodedAudio", "decode_audio", "read_audio_bytes", "representative_window", "sniff_format"]
