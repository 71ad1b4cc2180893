"""Musical form: which bars of a phrase repeat which, voice by voice.

Real music states a figure, repeats it, varies it and returns to it; game music loops.
A ``Form`` is the plan the sampler that plays follows (``engine.sampler.form``): a phrase
of ``bars`` bars cut into equal sections named by letters (``shape``: "AABA" is a 32-bar
song form in small, "ABAC" a period whose consequent opens as its antecedent did), and
loop lengths for the bass and the drums, which in game music repeat a riff or a groove
under whatever the melody does.  The default, ABAB in 8 bars, is the shape whose phrase
repeats and self-similarity come nearest real music's (``python -m engine.evaluation.form``:
a peak at a lag of 4 bars, as folk tunes and the Freedoom soundtracks have; AABA peaks at 6
and repeats no phrase).

``Form.sources`` turns it into what the kernel reads: for each voice and each bar of the
phrase, the earlier bar of the phrase it recalls (-1: composed new).  The first bar of a
section whose letter came before recalls the same bar of that earlier section; the melody
and the harmony follow the shape; the bass recalls the bar ``bass_loop`` bars back, the
drums ``drums_loop`` bars back (0: they follow the shape too).  Whether a recall happens,
and exactly or varied, is the session's ``repetition`` (0..1) to decide, bar by bar; the
bass's and the drums' recalls take ``bass_share`` and ``drums_share`` of it (``shares``).
"""
from dataclasses import dataclass

import numpy as np

from engine.ensemble import BASS, DRUMS, HARMONY, MELODY
from engine.errors import InvalidMessage

#: Section letters a shape may use, and the longest phrase (bars) a form may have.
LETTERS = "ABCDEFGH"
MAX_PHRASE_BARS = 16
REPETITION_RANGE = (0.0, 1.0)


@dataclass(frozen=True)
class Form:
    """A phrase of ``bars`` bars in ``len(shape)`` equal sections; loops for bass and drums
    (bars; 0 follows the shape)."""

    shape: str = "ABAB"
    bars: int = 8
    bass_loop: int = 2
    drums_loop: int = 1
    bass_share: float = 1.0
    drums_share: float = 1.0

    def __post_init__(self):
        check_form(self.shape, self.bars, self.bass_loop, self.drums_loop, self.bass_share,
                   self.drums_share)

    @property
    def section(self):
        """Bars per section."""
        return self.bars // len(self.shape)

    def sources(self, n_voices):
        """[max(n_voices, 1), MAX_PHRASE_BARS] int64: the bar of the phrase each voice's
        bar recalls (-1: new; bars past ``bars`` unused).  A one-line model's voice 0 is
        its melody."""
        nv = max(n_voices, 1)
        out = np.full((nv, MAX_PHRASE_BARS), -1, np.int64)
        shaped = self._shaped()
        for v in range(nv):
            loop = {BASS: self.bass_loop, DRUMS: self.drums_loop}.get(v, 0) if n_voices else 0
            for j in range(self.bars):
                if loop:
                    out[v, j] = j - loop if j >= loop else -1
                else:
                    out[v, j] = shaped[j]
        return out

    def shares(self, n_voices):
        """[max(n_voices, 1)] float64: the share of the session's repetition each voice's
        recalls take (a bar is recalled with probability repetition x share): the bass's
        and the drums' ``bass_share`` and ``drums_share``, the others 1."""
        out = np.ones(max(n_voices, 1))
        if n_voices:
            out[BASS], out[DRUMS] = self.bass_share, self.drums_share
        return out

    def _shaped(self):
        """Per bar: the same bar of the first earlier section with the same letter."""
        sec, first = self.section, {}
        out = []
        for i, letter in enumerate(self.shape):
            first.setdefault(letter, i)
            for k in range(sec):
                out.append(first[letter] * sec + k if first[letter] != i else -1)
        return out


def check_form(shape, bars, bass_loop=0, drums_loop=0, bass_share=1.0, drums_share=1.0,
               field="form"):
    """Raise InvalidMessage naming ``field`` unless this is a form the sampler can follow."""
    if not isinstance(shape, str) or not shape or any(c not in LETTERS for c in shape):
        raise InvalidMessage(f"{field}: the shape {shape!r} must be 1..{MAX_PHRASE_BARS} "
                             f"section letters from {LETTERS}", field=field,
                             allowed=f"letters {LETTERS[0]}..{LETTERS[-1]}, e.g. AABA")
    if isinstance(bars, bool) or not isinstance(bars, int) or not 1 <= bars <= MAX_PHRASE_BARS:
        raise InvalidMessage(f"{field}: a phrase of {bars!r} bars; a phrase is 1.."
                             f"{MAX_PHRASE_BARS} bars", field=f"{field}.bars",
                             allowed=f"1..{MAX_PHRASE_BARS}")
    if bars % len(shape):
        raise InvalidMessage(f"{field}: {bars} bars do not split into the {len(shape)} equal "
                             f"sections of {shape!r}", field=f"{field}.bars",
                             allowed=f"a multiple of {len(shape)} up to {MAX_PHRASE_BARS}")
    for name, loop in (("bass_loop", bass_loop), ("drums_loop", drums_loop)):
        if isinstance(loop, bool) or not isinstance(loop, int) or not 0 <= loop <= bars:
            raise InvalidMessage(f"{field}: {name} {loop!r} must be 0..{bars} bars (0: follow "
                                 "the shape)", field=f"{field}.{name}", allowed=f"0..{bars}")
    for name, share in (("bass_share", bass_share), ("drums_share", drums_share)):
        if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0 <= share <= 1:
            raise InvalidMessage(f"{field}: {name} {share!r} must be 0..1 (the share of the "
                                 "repetition its recalls take)", field=f"{field}.{name}",
                                 allowed="0..1")


#: Voices whose recalls may be varied (re-composed in part); the drums recall exactly.
VARIED = (MELODY, BASS, HARMONY)
