"""Tags + user options → the words an image model gets: deterministic, readable, weighted.

The prompt is assembled from short phrases, each with a weight taken from the confidence of the
tag it came from; phrases below a confidence floor are left out rather than asserted. The same tags
and options always give the same prompt, so a user's re-roll changes the seed, never the words.
"""

from __future__ import annotations

from m2i_engine.models.emotion import GEMS_VALENCE_AROUSAL
from m2i_engine.options import VisualizeOptions
from m2i_engine.prompt.model import Prompt
from m2i_engine.prompt.styles import BASE_NEGATIVE, preset, resolve_style
from m2i_engine.tags import LabelScore, SongSection, Tags

#: a classifier label is only put into words above this score
MIN_LABEL_SCORE = 0.2
#: CLIP-based models read about 77 tokens; stop adding optional phrases beyond this many words
MAX_WORDS = 60

GENRE_IMAGERY: dict[str, str] = {
    "blues": "smoky late-night blues bar, deep indigo haze",
    "classical": "grand concert hall, flowing ribbons of light",
    "country": "open prairie at golden hour, dusty roads",
    "disco": "mirror-ball glitter, dance floor lights",
    "electronic": "pulsing geometric light grid, synth waves",
    "hiphop": "urban street art, bold graffiti shapes",
    "jazz": "intimate jazz club, brass glints and swirling smoke",
    "metal": "jagged steel shards, storm and fire",
    "pop": "glossy candy-colored bubbles, bright stage",
    "reggae": "sunlit tropical waves, warm green gold and red",
    "rock": "roaring stage lights, electric guitars, raw energy",
}

#: the tagger's style words (as it writes them) in pictures; the genre words it shares with GTZAN
#: look as they do for the genre model
STYLE_IMAGERY: dict[str, str] = {
    **GENRE_IMAGERY,
    "hip-hop": GENRE_IMAGERY["hiphop"],
    "rap": GENRE_IMAGERY["hiphop"],
    "electronica": GENRE_IMAGERY["electronic"],
    "electro": "chrome circuitry and laser lines",
    "house": "warehouse strobes, rhythmic bands of light",
    "techno": "dark industrial warehouse, stark strobe lines",
    "trance": "hypnotic tunnel of swirling light",
    "dance": "swirling dance-floor lights, motion blur",
    "ambient": "vast misty horizon, slow drifting light",
    "chillout": "soft sunset haze, lounge calm",
    "experimental": "fractured collage of unexpected forms",
    "indie": "sunlit bedroom collage, faded film photos",
    "alternative": "moody grunge textures, muted colors",
    "punk": "torn photocopied collage, spray paint and safety pins",
    "funk": "groovy seventies swirls, glossy brass",
    "soul": "warm vinyl glow, velvet stage light",
    "rnb": "silky city night lights, velvet purple",
    "folk": "wooden cabin by a forest, hand-woven textures",
    "hard rock": "blazing amplifiers, stage smoke",
    "heavy metal": "molten iron and lightning",
    "acoustic": "warm wood grain, sunlit strings",
    "guitar": "gleaming guitar strings, amber light",
    "piano": "ivory piano keys in soft light",
    "party": "confetti and party lights",
    "mellow": "soft hazy pastel light",
    "60s": "psychedelic sixties swirls, sunburst colors",
    "70s": "seventies film palette, warm orange and brown",
    "80s": "retro eighties neon, chrome and pastel grids",
    "90s": "nineties VHS grain, bold primary colors",
    "female vocalists": "soaring luminous ribbons like a high voice",
    "male vocalists": "deep resonant glow like a low voice",
    "instrumental": "wordless flowing instrumental forms",
}
#: style phrases standing in for a genre the genre model is unsure of (or didn't give)
MAX_STYLE_PHRASES = 3
#: style phrases added after a confident genre's imagery
MAX_STYLE_EXTRAS = 2

EMOTION_WORDS: dict[str, str] = {
    "amazement": "awe-struck, wondrous",
    "solemnity": "solemn, majestic",
    "tenderness": "tender, gentle",
    "nostalgia": "nostalgic, wistful",
    "calmness": "calm, serene",
    "power": "powerful, triumphant",
    "joyful_activation": "joyful, exuberant",
    "tension": "tense, ominous",
    "sadness": "melancholic, sorrowful",
}


def emotion_labels(tags: Tags) -> list[LabelScore]:
    """The (at most two) emotions the prompt puts into words, best first.

    The runner-up is left out when it pulls the other way on arousal (joyful activation beside
    calmness, power beside sadness): "joyful, exuberant, calm, serene" asks the image for two moods
    and gets neither. Arousal signs are the circumplex placement the mood fallback uses.
    """
    if tags.emotion.status != "ok" or tags.emotion.uncertain:  # an unfamiliar song: the mood words speak
        return []
    sure = [ls for ls in tags.emotion.labels[:2] if ls.score >= MIN_LABEL_SCORE and ls.label in EMOTION_WORDS]
    if len(sure) == 2:
        first, second = (GEMS_VALENCE_AROUSAL.get(ls.label, (0.0, 0.0))[1] for ls in sure)
        if first * second < 0:
            sure = sure[:1]
    return sure


def mood_words(valence: float, arousal: float) -> str:
    """Words for a point of the valence/arousal plane (used when no emotion model answered)."""
    if arousal >= 0.25:
        return "euphoric, vibrant" if valence >= 0.0 else "tense, restless"
    if arousal <= -0.25:
        return "serene, warm" if valence >= 0.0 else "melancholic, hushed"
    return "bright, easygoing" if valence >= 0.0 else "moody, brooding"


def tempo_words(bpm: float, energy: float) -> str:
    if bpm < 80:
        feel = "slow, swaying rhythm"
    elif bpm < 110:
        feel = "relaxed groove"
    elif bpm < 140:
        feel = "steady driving pulse"
    else:
        feel = "fast, frantic rhythm"
    density = "dense layered forms" if energy >= 0.6 else "sparse airy forms" if energy <= 0.3 else ""
    return f"{feel}, {density}" if density else feel


def key_words(mode: str) -> str:
    return "luminous major-key light" if mode == "major" else "deep minor-key shadows"


def style_phrases(tags: Tags) -> list[tuple[str, float]]:
    """A weighted phrase for each of the tagger's style words that has a picture, best first, no repeats."""
    out: list[tuple[str, float]] = []
    for s in tags.styles:
        phrase = STYLE_IMAGERY.get(s.label)
        if phrase is not None and all(phrase != p for p, _ in out):
            out.append((phrase, _weight(s.score)))
    return out


def build_prompt(tags: Tags, options: VisualizeOptions | None = None) -> Prompt:
    """Compose the prompt for ``tags`` under ``options``.

    Order, most important first: medium/framing from the style, the user's own words, emotion,
    genre imagery, rhythm and density, tonality, then the style's finish. A genre the model is
    uncertain of gives no imagery: the style words stand in for it (up to :data:`MAX_STYLE_PHRASES`);
    after a confident genre at most :data:`MAX_STYLE_EXTRAS` style phrases follow its imagery. Style
    phrases beyond the first are only added where they fit within :data:`MAX_WORDS` with everything
    else, so they never push out the rhythm, tonality or finish.

    The style is resolved here, once: the prompt's ``style`` is concrete (``auto`` becomes the look
    :func:`~m2i_engine.prompt.styles.resolve_style` picks for ``tags``), and backends draw in it.
    """
    options = options or VisualizeOptions()
    style = resolve_style(options.style, tags)
    p = preset(style)
    phrases: list[tuple[str, float]] = [(p.lead, 1.0)]
    if options.prompt:
        phrases.append((options.prompt, 1.2))

    for ls in emotion_labels(tags):
        phrases.append((EMOTION_WORDS[ls.label], _weight(ls.score)))
    if not any(w in EMOTION_WORDS.values() for w, _ in phrases):
        phrases.append((mood_words(tags.mood.valence, tags.mood.arousal), 0.8))

    styled = style_phrases(tags)
    top = tags.genre.confident_top
    if top is not None and top.score >= MIN_LABEL_SCORE and top.label in GENRE_IMAGERY:
        imagery = GENRE_IMAGERY[top.label]
        phrases.append((imagery, _weight(top.score)))
        extras = [ph for ph in styled if ph[0] != imagery][:MAX_STYLE_EXTRAS]
    else:
        phrases.extend(styled[:1])
        extras = styled[1:MAX_STYLE_PHRASES]

    tail = [
        (tempo_words(tags.tempo.bpm, tags.loudness.energy), _weight(tags.tempo.confidence)),
        (key_words(tags.key.mode), _weight(tags.key.confidence)),
        (p.finish, 0.8),
    ]
    room = MAX_WORDS - sum(len(ph.split()) for ph, _ in (*phrases, *tail))
    for phrase, weight in extras:
        if len(phrase.split()) <= room:
            phrases.append((phrase, weight))
            room -= len(phrase.split())
    phrases.extend(tail)

    text = _join_within(phrases, MAX_WORDS, keep=2 if options.prompt else 1)
    negative = ", ".join(x for x in (options.negative, p.negative, BASE_NEGATIVE) if x)
    return Prompt(text=text, negative=negative, style=style, phrases=tuple(phrases))


def _weight(confidence: float) -> float:
    """Map a 0..1 confidence to an emphasis weight in 0.6..1.2 (A1111/compel convention)."""
    return round(0.6 + 0.6 * max(0.0, min(1.0, confidence)), 2)


def _join_within(phrases: list[tuple[str, float]], max_words: int, *, keep: int) -> str:
    """Join phrases in order, skipping optional ones that would exceed ``max_words``.

    The first ``keep`` phrases (framing, and the user's own words) are always kept.
    """
    out: list[str] = []
    words = 0
    for i, (phrase, _) in enumerate(phrases):
        n = len(phrase.split())
        if i >= keep and words + n > max_words:
            continue
        out.append(phrase)
        words += n
    return ", ".join(out)


#: words for a named section of the song (letters A, B, C … add none): a video's scene for that part
SECTION_WORDS: dict[str, str] = {
    "intro": "opening scene, sparse and emerging",
    "verse": "steady unfolding scene",
    "chorus": "climactic, full and radiant",
    "bridge": "contrasting, transformed scene",
    "outro": "fading, resolving scene",
}
#: (upper energy bound, words) for a section's energy, first match wins
SECTION_ENERGY_WORDS: tuple[tuple[float, str], ...] = (
    (0.35, "calm, still, soft light"),
    (0.6, "flowing, steady pulse of light"),
    (1.01, "explosive, bursting with intense light and motion"),
)


def section_prompt(prompt: Prompt, section: SongSection, *, energy: float | None = None) -> Prompt:
    """``prompt`` for one section of the song: its name's words (when it has one) and words for its
    energy (``energy`` overrides the section's) appended, so a video's chorus and verse differ in what
    they ask for as well as in their noise."""
    level = section.energy if energy is None else energy
    words = [
        w
        for w in (
            SECTION_WORDS.get(section.label, ""),
            next(w for bound, w in SECTION_ENERGY_WORDS if level < bound),
        )
        if w
    ]
    extra = tuple((w, 1.0) for w in words)
    return Prompt(
        text=", ".join([prompt.text, *words]),
        negative=prompt.negative,
        style=prompt.style,
        phrases=(*prompt.phrases, *extra),
    )
