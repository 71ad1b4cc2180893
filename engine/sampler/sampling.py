"""Sampling a token in numba: a reproducible random stream per session, and the rules
under which the runtime (``engine.sampler.generator.Runtime``) samples from the logits.

The vocabulary is laid out kind after kind (``engine.vocab.Vocab.offsets``), so the rules
are applied kind by kind over ranges of token ids; ``layout`` holds those ranges
(indexed by the constants below) and, for an ensemble model (``Vocab.n_voices`` > 0),
the drum voice's id.  A note event applies to the session's current voice (``voice[s]``,
set by the last VOICE token): the sounding table is indexed by voice * 128 + pitch.
With one line the current voice is always 0 and every rule reads as before voices.
"""
import numpy as np
from numba import njit

from engine.vocab import NOTE_OFF, NOTE_ON, TIME_SHIFT, VELOCITY, VOICE

#: Indices into ``layout``: first ids of note-on, note-off, time shift (and how many),
#: velocity (and how many), voice (and how many), the drum voice (NONE_DRUMS if none), and
#: the longest a drum note is held (ticks): a drum is a one-shot, and a held one could not
#: be struck again, so the note guard releases it after a sixteenth of a beat; the bass
#: voice (NONE_DRUMS if none), whose notes the root prior weighs; the melody and harmony
#: voices, which with the bass the voice-order prior keeps in their order.
(ON, OFF, SHIFT, N_SHIFT, VEL, N_VEL, VOICE0, N_VOICES, DRUM, DRUM_TICKS, BASS_VOICE,
 MELODY_VOICE, HARMONY_VOICE) = range(13)
NONE_DRUMS = -2  # never a voice id


def layout(vocab, drums, bass=NONE_DRUMS, melody=NONE_DRUMS, harmony=NONE_DRUMS):
    """``layout`` for a vocabulary whose drum, bass, melody and harmony voices (if it has
    voices) are ``drums``, ``bass``, ``melody`` and ``harmony``."""
    o, c = vocab.offsets, vocab.counts
    nv = vocab.n_voices

    def role(v):
        return v if nv > v >= 0 else NONE_DRUMS
    return np.array([o[NOTE_ON], o[NOTE_OFF], o[TIME_SHIFT], c[TIME_SHIFT], o[VELOCITY],
                     c[VELOCITY], o[VOICE], nv, role(drums),
                     max(1, vocab.ticks_per_beat // 4), role(bass), role(melody), role(harmony)],
                    np.int64)


@njit(nogil=True, cache=True, inline="always")
def rank(layout, v):
    """Where voice v belongs in the texture's order from the bottom: bass 0, harmony 1,
    melody 2; -1 for drums or a voice with no place in it."""
    if v == layout[BASS_VOICE]:
        return 0
    if v == layout[HARMONY_VOICE]:
        return 1
    if v == layout[MELODY_VOICE]:
        return 2
    return -1


@njit(nogil=True, cache=True)
def uniform(rng, s):
    """xorshift64* per session: uniform float in [0, 1), reproducible from the seed."""
    x = rng[s]
    x ^= x >> np.uint64(12)
    x ^= x << np.uint64(25)
    x ^= x >> np.uint64(27)
    rng[s] = x
    return ((x * np.uint64(2685821657736338717)) >> np.uint64(11)) * (1.0 / 9007199254740992.0)


@njit(nogil=True, cache=True, inline="always")
def guard(s, sounding, gen_tick, max_note_ticks, voice, layout):
    """The note guard: the token that starts releasing a note of session s held
    ``max_note_ticks[s]`` or longer (its note-off, or first the VOICE token of its voice
    when that is not the current one), or -1 when none is."""
    for i in range(sounding.shape[1]):
        if sounding[s, i] >= 0 and gen_tick[s] - sounding[s, i] >= held_limit(
                s, i, max_note_ticks, layout):
            if layout[N_VOICES] > 0 and i // 128 != voice[s]:
                return layout[VOICE0] + i // 128
            return layout[OFF] + i % 128
    return -1


#: Interval classes heard as dissonant against a held note: seconds, the tritone, sevenths
#: (as ``engine.evaluation.texture`` judges simultaneous notes; fourths left alone).
DISSONANT = (1, 2, 6, 10, 11)


@njit(nogil=True, cache=True, inline="always")
def dissonance(held, pc):
    """How many of the pitch classes in the bit set ``held`` pitch class ``pc`` clashes
    with (an interval class in ``DISSONANT``)."""
    n = 0
    for ic in DISSONANT:
        if held & (1 << ((pc + ic) % 12)):
            n += 1
    return n


@njit(nogil=True, cache=True, inline="always")
def rootness(upper, pc):
    """How well pitch class ``pc`` roots the pitch classes ``upper`` (a bit set) the voices
    above the bass hold: one for each of its third (minor or major), its fifth and itself
    among them (0..3)."""
    n = 0
    if upper & (1 << ((pc + 3) % 12)) or upper & (1 << ((pc + 4) % 12)):
        n += 1
    if upper & (1 << ((pc + 7) % 12)):
        n += 1
    if upper & (1 << pc):
        n += 1
    return n


@njit(nogil=True, cache=True, inline="always")
def is_line(layout, v):
    """Whether voice v plays a line the line prior smooths: the melody or the bass."""
    return v >= 0 and (v == layout[MELODY_VOICE] or v == layout[BASS_VOICE])


#: How far back (events) ``last_pitch`` looks for a voice's last note.
LINE_LOOKBACK = 64


@njit(nogil=True, cache=True)
def last_pitch(s, v, ev_tok, ev_voice, tail, kinds, values):
    """The pitch of voice v's last note-on among session s's latest ``LINE_LOOKBACK``
    events in the ring (-1: none there).  Read from the ring, not kept apart, so a rewind
    (which drops events from the ring) needs nothing more."""
    R = ev_tok.shape[1]
    lo = max(0, tail[s] - min(R, LINE_LOOKBACK))
    for i in range(tail[s] - 1, lo - 1, -1):
        tok = ev_tok[s, i % R]
        if kinds[tok] == 1 and ev_voice[s, i % R] == v:
            return values[tok]
    return -1


@njit(nogil=True, cache=True, inline="always")
def held_limit(s, i, max_note_ticks, layout):
    """The longest session s may hold its sounding entry i (voice * 128 + pitch): the
    session's guard, a sixteenth for a drum."""
    if i // 128 == layout[DRUM] and layout[DRUM_TICKS] < max_note_ticks[s]:
        return layout[DRUM_TICKS]
    return max_note_ticks[s]


@njit(nogil=True, cache=True)
def sample(s, logits, temperature, sounding, entry, gen_tick, max_note_ticks, pc_bias, rng,
           voice, voice_on, layout, probs, voice_bias, entered, consonance, rooting, inversion,
           ordering, smoothing, prev, leading, aim, scripted):
    """Sample the next token of session s under the runtime's rules: never START, no
    note-off of a silent pitch, no note-on of a sounding one, only note-ons while
    ``entry`` (an immediate transition starts with a note, at once), and a note held
    longer than ``max_note_ticks[s]`` is released instead of sampling (a guard: note
    lengths come from the model).  A note-on's probability is multiplied by the
    tonality prior ``exp(pc_bias[s, pitch class])`` (``engine.controls.tonality_bias``).

    With voices: note events need a voice in force; a voice switched off in
    ``voice_on[s]`` is never named by a VOICE token and gets no note-on even while it is
    current; VOICE token v's probability is multiplied by ``exp(voice_bias[s, v])`` (its
    log-odds moved by the session's presence bias for that voice; 0 leaves it as the
    model has it); the tonality prior applies to pitched voices only, never to drums, and
    so does the consonance prior: a pitched note-on's probability is divided by
    ``exp(consonance[s])`` for each pitch class the pitched voices hold that it clashes
    with (``dissonance``; 0 leaves the model's own harmony); and a bass note-on's by
    ``exp(rooting[s])`` for each point of ``rootness`` (its third, fifth and itself among
    what the voices above hold) it falls short of the best root's: the bass on the root of
    what sounds, never more bass than the model plays (0: off); a melody or harmony
    note-on's by ``exp(inversion[s])`` for each point of ``rootness`` the sounding bass
    note, as the root of what would then sound, falls short of the best root's: the
    upper voices build their chord on the bass (root position) rather than move the
    root off it (0: off); and by ``exp(ordering[s])``
    for each other pitched voice it would cross (``rank``: the bass below the harmony below
    the melody; a note above the lowest a higher voice holds, or below the highest a lower
    one holds, a unison allowed; not while the voice enters; 0: off); and a melody or bass
    note-on's by ``exp(smoothing[s])`` per semitone it leaps beyond a whole step from
    ``prev``, the voice's last note-on (``last_pitch``; -1: none), so the lines move by
    step as real melodies and basses mostly do (0: off); and by ``exp(leading[s])`` per
    semitone beyond a whole step from ``aim``, the first pitch of the bar the voice recalls
    next, while it leads into it (``engine.sampler.plan.lead_in``; -1: none), so the free
    bar before a recalled one leads into it (0: off).
    The entry rule is per voice: while it holds, a VOICE token may name only a voice
    that may play and has not entered (``entered[s]``: sounded a note-on since the
    entry began), and it holds only while such a voice is left, so with every voice off
    it lapses (silence is all the session may play).

    A voice ``scripted[s]`` for this bar (its notes recalled by the form plan,
    ``engine.sampler.form``) is the plan's to play: never named, no note-on or note-off
    of its own sampled, and it need not enter; in an ensemble, the probability the model
    gives its notes (while it is in force) or its VOICE token goes to the time shifts, in
    the proportions the model gives them: the plan plays it, time passes as the model
    would let it, and the voices left free get no more notes than the model gives them
    (renormalised away, it went to them: a free melody over a recalled accompaniment
    played four times its notes; all of it on the shortest shift, a step a tick, doubled
    the steps a beat).

    ``probs[s]`` (float64, one per token) is scratch: each token's unnormalised
    probability, 0 where the rules forbid it, is computed once and then drawn from."""
    g = guard(s, sounding, gen_tick, max_note_ticks, voice, layout)
    if g >= 0:
        return g
    cur = voice[s]
    ent = entry[s]
    nv = layout[N_VOICES]
    if ent and nv > 0:
        ent = False
        for v in range(nv):
            if voice_on[s, v] and not entered[s, v] and not scripted[s, v]:
                ent = True
    elif ent and scripted[s, 0]:
        ent = False  # one line, recalled: the plan plays its notes
    free = cur >= 0 and not scripted[s, cur]
    V = logits.shape[1]
    m = -np.inf
    for v in range(V):
        if logits[s, v] > m:
            m = logits[s, v]
    t = temperature[s]
    for v in range(V):
        probs[s, v] = 0.0
    # kind by kind, in token order (the total is summed in that order)
    total = 0.0
    # while an ensemble enters, a voice that has entered waits for the others: one note
    # each, then the chords fill in (a cluster of one voice's notes is no entry)
    if free and voice_on[s, cur] and not (ent and nv > 0 and entered[s, cur]):
        base, on = cur * 128, layout[ON]
        tonal = cur != layout[DRUM]
        held = 0  # pitch classes the pitched voices sound (bit per class), for the priors
        upper = 0  # ... and those of the voices above the bass, for the root prior
        root = cur == layout[BASS_VOICE] and rooting[s] > 0.0
        inv = (inversion[s] > 0.0 and cur != layout[BASS_VOICE]
               and layout[BASS_VOICE] != NONE_DRUMS)
        bass = 999  # the lowest pitch the bass holds, for the inversion prior
        # not while entering: an entry note must come at once, wherever the others are
        rc = rank(layout, cur) if ordering[s] > 0.0 and not ent else -1
        line = prev >= 0 and smoothing[s] > 0.0 and is_line(layout, cur)
        below = -1  # the highest pitch a voice under this one holds, per voice under it ...
        below2 = -1
        above = 999  # ... and the lowest a voice over it holds
        above2 = 999
        if tonal and (consonance[s] > 0.0 or root or inv or rc >= 0):
            for i in range(sounding.shape[1]):
                if sounding[s, i] >= 0 and i // 128 != layout[DRUM]:
                    held |= 1 << (i % 128 % 12)
                    if i // 128 != layout[BASS_VOICE]:
                        upper |= 1 << (i % 128 % 12)
                    else:
                        bass = min(bass, i % 128)
                    r = rank(layout, i // 128) if rc >= 0 else -1
                    if r >= 0 and r != rc:
                        # two voices each side at most: the nearest and the farther one
                        if r == rc - 1:
                            below = max(below, i % 128)
                        elif r < rc:
                            below2 = max(below2, i % 128)
                        elif r == rc + 1:
                            above = min(above, i % 128)
                        else:
                            above2 = min(above2, i % 128)
        if consonance[s] <= 0.0:
            held = 0
        best = 0  # the best root's rootness: a bass note loses what it falls short of it
        if root and upper:
            for r in range(12):
                best = max(best, rootness(upper, r))
        # per pitch class, two bits each: how far the bass falls short of the best root of
        # what would sound with it (a packed int: the hot path allocates nothing)
        short = 0
        if inv and bass < 999:
            for q in range(12):
                chord = upper | (1 << q) | (1 << (bass % 12))
                top = 0
                for r in range(12):
                    top = max(top, rootness(chord, r))
                short |= (top - rootness(chord, bass % 12)) << (2 * q)
        for p in range(128):
            if sounding[s, base + p] < 0:
                z = (logits[s, on + p] - m) / t
                if tonal:
                    z += pc_bias[s, p % 12]
                    if held:
                        z -= consonance[s] * dissonance(held, p % 12)
                    if best:
                        z -= rooting[s] * (best - rootness(upper, p % 12))
                    if short:
                        z -= inversion[s] * ((short >> (2 * (p % 12))) & 3)
                    if rc >= 0:
                        z -= ordering[s] * (int(p < below) + int(p < below2) +
                                            int(p > above) + int(p > above2))
                    if line and abs(p - prev) > 2:
                        z -= smoothing[s] * (abs(p - prev) - 2)
                    if aim >= 0 and abs(p - aim) > 2:
                        z -= leading[s] * (abs(p - aim) - 2)
                w = np.exp(z)
                probs[s, on + p] = w
                total += w
    if free and not ent:
        base, off = cur * 128, layout[OFF]
        for p in range(128):
            if sounding[s, base + p] >= 0:
                total += _put(s, off + p, logits, m, t, probs)
    shifts = 0.0  # the time shifts' share, for what the plan's voices give back
    if not ent:
        for v in range(layout[SHIFT], layout[SHIFT] + layout[N_SHIFT]):
            shifts += _put(s, v, logits, m, t, probs)
        total += shifts
    for v in range(layout[VEL], layout[VEL] + layout[N_VEL]):
        total += _put(s, v, logits, m, t, probs)
    if nv > 0 and not ent:
        # what the model gives a voice the plan plays (its notes if it is in force, its
        # VOICE token if not) is time passing, not more notes for the voices left free
        rest = 0.0
        if cur >= 0 and scripted[s, cur] and voice_on[s, cur]:
            base = cur * 128
            for p in range(128):
                if sounding[s, base + p] < 0:
                    rest += np.exp((logits[s, layout[ON] + p] - m) / t)
                else:
                    rest += np.exp((logits[s, layout[OFF] + p] - m) / t)
        for k in range(nv):
            if k != cur and voice_on[s, k] and scripted[s, k]:
                rest += np.exp((logits[s, layout[VOICE0] + k] - m) / t)
        if rest > 0.0 and shifts > 0.0:
            # spread as the model spreads time: a shortest shift would cost a step a tick
            for v in range(layout[SHIFT], layout[SHIFT] + layout[N_SHIFT]):
                probs[s, v] += rest * probs[s, v] / shifts
            total += rest
    for k in range(nv):  # a voice that may play (and enter), not the one in force
        if k != cur and voice_on[s, k] and not scripted[s, k] and not (ent and entered[s, k]):
            w = np.exp((logits[s, layout[VOICE0] + k] - m) / t + voice_bias[s, k])
            probs[s, layout[VOICE0] + k] = w
            total += w
    if total == 0.0:
        return layout[SHIFT]  # nothing allowed: wait one tick
    u = uniform(rng, s) * total
    acc = 0.0
    last = 0
    for v in range(V):
        w = probs[s, v]
        if w > 0.0:
            acc += w
            last = v
            if acc > u:
                return v
    return last


@njit(nogil=True, cache=True, inline="always")
def _put(s, v, logits, m, t, probs):
    """Token v's unnormalised probability (softmax at temperature t), kept in probs."""
    w = np.exp((logits[s, v] - m) / t)
    probs[s, v] = w
    return w
