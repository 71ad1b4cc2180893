"""A Standard MIDI File recording of what plays, one track per session (per voice of an
ensemble session, or per channel), with the tempo map and the program changes, written
atomically and checkpointed while it plays."""
import contextlib
import logging
import math
import os
import tempfile
import threading
import time

import mido

from engine.errors import InvalidMessage, PortError

from realtime.outputs.base import BasePort, midi_bytes, note_of, session_names, voice_map

log = logging.getLogger("ostinato.outputs")


MIN_BPM = 60e6 / 0xFFFFFF  # a set_tempo holds at most 0xFFFFFF microseconds a beat
MAX_BPM = 60e6             # ... and at least 1


class _Track:
    """One track of a recording, kept as the bytes of its events so far (delta time +
    message), so that writing the file never re-encodes what is already recorded.
    ``session``: the name of the session it records (None when split by channel);
    ``voice``: the voice of that session it records (None: the whole session)."""

    def __init__(self, title, session=None, voice=None):
        self.title = title
        self.session = session
        self.voice = voice
        self.data = bytearray()
        self.tick = 0          # absolute tick of its last event

    def add(self, tick, message):
        """Append ``message`` at ``tick`` (never before the track's last event)."""
        tick = max(tick, self.tick)
        self.data += _varlen(tick - self.tick)
        self.data += bytes(message)
        self.tick = tick
        return tick


def _varlen(n):
    """A standard MIDI file's variable-length quantity."""
    out = bytearray([n & 0x7F])
    n >>= 7
    while n:
        out.insert(0, 0x80 | (n & 0x7F))
        n >>= 7
    return out


def _chunk(kind, body):
    return kind + len(body).to_bytes(4, "big") + body


def _meta_name(title):
    name = title.encode("utf-8")[:0x7F]
    return b"\x00\xff\x03" + bytes([len(name)]) + name


_END_OF_TRACK = b"\x00\xff\x2f\x00"


class MidiFilePort(BasePort):
    """Records what it is sent to a type 1 .mid file, complete and balanced whenever it
    is read: at close, and at a checkpoint every ``checkpoint_s`` while recording.

    Track 0 holds the tempo map of the timeline session (``tempo(bpm, beat, session)``;
    default "main"), then one track per session *name* (``split="session"``) or per MIDI
    channel (``split="channel"``).  Voices (``voices``, {slot: {channel: voice name}},
    set by the server in order with the messages): a session whose channels name two
    voices or more (an ensemble; the stinger's "stinger" not counted) gets a track per
    voice that played instead, named "<voice>" when the recording holds one session and
    "<session> <voice>" when it holds several; a one-line session (one voice) keeps its
    one track under the session's name.  Channel messages go in the track of their
    channel's voice, program changes included; those sent before a voice's first note
    wait for it (the last of each kind is kept), so a voice that never played has no
    track.  Times come from the events' beats, not the wall clock, so the timeline
    session's track is musically exact; another session's track
    keeps its own beats (it joined the main grid when it opened), so at a tempo of its own
    it drifts from the main track in the file.  A track's events never go back in time:
    an event stamped before the track's last one (an immediate transition plays ahead of
    its beat, then a release stamps the current beat) is placed at the last one, and a
    session reopened under a name whose track has gone further is shifted to follow on.

    A note-off ends the note sounding on its channel and pitch, in the track of the
    session that sounded it (another session's retrigger included); a note-off of a
    silent note is not written (``dropped_offs`` counts them); notes still sounding
    are ended at the recording's last beat.  System messages (clock, transport) are
    not recorded: a standard MIDI file cannot hold them.

    Markers: the timeline session's changes of preset (``state NAME``), its cues as they
    play (``cue NAME``) and its theme's statements and returns (``theme``) are Marker
    events (FF 06) in the tempo track, where a DAW shows them on its timeline.  A preset
    change the recording has not reached yet is replaced by the next one, as the
    sequencer replaces a pending change.

    Checkpoints: a thread of the port rewrites ``path`` (a temporary file, then
    ``os.replace``, so a reader never sees half a file) at most every ``checkpoint_s``
    seconds while new events come, with sounding notes closed at the last beat; so a
    process killed outright loses at most that much.  The sending thread only appends
    bytes; the checkpoint copies them under the lock.  ``checkpoint_s=None``: written at
    close only.
    """

    name = "file"

    def __init__(self, path, sessions=None, split="session", ticks_per_beat=480, bpm=120.0,
                 checkpoint_s=1.0, timeline="main"):
        super().__init__()
        if split not in ("session", "channel"):
            raise InvalidMessage(f"split must be 'session' or 'channel', got {split!r}",
                                 field="split", allowed="session, channel")
        if not isinstance(ticks_per_beat, int) or not 1 <= ticks_per_beat <= 0x7FFF:
            raise InvalidMessage(f"ticks_per_beat must be an integer 1-32767, got {ticks_per_beat!r}",
                                 field="ticks_per_beat", allowed="1-32767")
        if checkpoint_s is not None and not (isinstance(checkpoint_s, (int, float))
                                             and 0 < checkpoint_s < math.inf):
            raise InvalidMessage(f"checkpoint_s must be a number of seconds > 0 or None, "
                                 f"got {checkpoint_s!r}", field="checkpoint_s",
                                 allowed="> 0 or None")
        self.path = os.path.abspath(os.fspath(path))
        folder = os.path.dirname(self.path)
        if not os.path.isdir(folder) or not os.access(folder, os.W_OK):  # fail now, not at close
            raise PortError(f"cannot record to {self.path!r}: folder {folder!r} "
                            f"does not exist or is not writable")
        self.split = split
        self.ticks_per_beat = ticks_per_beat
        self.timeline = timeline
        self.checkpoint_s = checkpoint_s
        self.checkpoints = 0      # files written before close
        self.dropped_offs = 0
        self._names = session_names(sessions)
        self._voices = {}         # slot -> {channel: voice} of the ensemble sessions only
        self._lock = threading.Lock()  # send() and the checkpoint thread
        # track key (session name, (session name, voice), or channel) -> _Track
        self._tracks = {}
        self._offsets = {}        # session name -> beats added to its beats (reopened)
        self._rebase = set()      # names a new session took: offset at its next event
        self._pending = {}        # (session name, voice) -> {kind: (tick, message)}
        self._sounding = {}       # (channel, pitch) -> (track key, tick of the note-on)
        self._tempi = []          # (tick, bpm) of the tempo track
        self._markers = []        # (tick, kind, text) of the tempo track's markers
        self._last_tick = 0
        self._dirty = False
        self._done = threading.Event()
        self._checkpointer = None
        self.tempo(bpm, 0.0)
        if checkpoint_s is not None:
            self._checkpointer = threading.Thread(target=self._checkpoint_loop, daemon=True,
                                                  name="ostinato-recording")
            self._checkpointer.start()

    @property
    def sessions(self):
        """{index: name} of the sessions, naming their tracks; set it with a list or dict."""
        return dict(self._names)

    @sessions.setter
    def sessions(self, sessions):
        names = session_names(sessions)
        with self._lock:
            if self.split == "session":
                recorded = {t.session for t in self._tracks.values()}
                # a new session under a recorded name follows on from its tracks
                self._rebase |= (set(names.values()) - set(self._names.values())) & recorded
            self._names = names

    @property
    def voices(self):
        """{slot: {channel: voice name}} of the ensemble sessions (two voices or more),
        which get a track per voice; set it with the whole map (``base.voice_map``)."""
        return {slot: dict(channels) for slot, channels in self._voices.items()}

    @voices.setter
    def voices(self, voices):
        ensembles = {slot: channels for slot, channels in voice_map(voices).items()
                     if len(set(channels.values()) - {"stinger"}) >= 2}
        with self._lock:
            self._voices = ensembles

    def tempo(self, bpm, beat, session=None):
        """The tempo is ``bpm`` from ``beat`` on: a set_tempo in the tempo track.

        session: the index of the session whose tempo it is; only the timeline
        session's tempo goes into the file (None: the timeline's).  A change the
        recording has not reached yet is replaced by the next one, as the sequencer
        replaces a pending change.
        """
        beat = _check_beat(beat)
        try:
            bpm = float(bpm)
        except (TypeError, ValueError):
            bpm = math.nan
        if not MIN_BPM <= bpm <= MAX_BPM:
            raise InvalidMessage(f"bpm must be {MIN_BPM:.2f}-{MAX_BPM:.0f}, got {bpm!r}",
                                 field="bpm", allowed=f"{MIN_BPM:.2f}-{MAX_BPM:.0f}")
        with self._lock:
            if session is not None and self._names.get(session) != self.timeline:
                return
            reached, tick = self._reached(self.timeline), self._timeline_tick(beat)
            self._tempi = [(t, b) for t, b in self._tempi if t <= reached] + [(tick, bpm)]
            self._dirty = True

    def publish(self, type, session=None, beat=None, **fields):
        """A marker of the timeline session: a preset change (a ``mood`` event with a
        ``name``), a cue as it plays, a theme's statement or return."""
        if type == "mood" and fields.get("name"):
            kind, text = "state", f"state {fields['name']}"
        elif type == "cue":
            kind, text = "cue", f"cue {fields.get('name')}"
        elif type in ("theme", "theme_return") and (type == "theme_return" or fields.get("theme")):
            kind, text = "theme", "theme" if type == "theme" else "theme returns"
        else:
            return
        if beat is None:
            return
        beat = _check_beat(beat)
        with self._lock:
            name = session if isinstance(session, str) else self._names.get(session)
            if name != self.timeline:
                return
            if kind == "state":  # a change not reached yet is replaced
                reached = self._reached(self.timeline)
                self._markers = [m for m in self._markers if m[1] != "state" or m[0] <= reached]
            self._markers.append((self._timeline_tick(beat), kind,
                                  text.encode("utf-8", "replace")[:120]))
            self._dirty = True

    def _reached(self, name):
        """The last tick session ``name``'s tracks have recorded (the caller holds
        self._lock)."""
        return max((t.tick for t in self._tracks.values() if t.session == name), default=0)

    def _timeline_tick(self, beat):
        """The file's tick of the timeline session's ``beat`` (after its offset, should it
        have been reopened)."""
        return round((beat + self._offsets.get(self.timeline, 0.0)) * self.ticks_per_beat)

    def _send(self, status, data1, data2, t_ns, beat, session):
        message = midi_bytes(status, data1, data2)
        beat = _check_beat(beat)
        if message[0] >= 0xF0:
            return
        with self._lock:
            self._record(message, beat, session)
            self._dirty = True

    def _record(self, message, beat, session):
        # the caller holds self._lock
        channel = message[0] & 0x0F
        if self.split == "session":
            name = self._names.get(session, f"session {session}")
            voice = self._voices.get(session, {}).get(channel)
            key = name if voice is None else (name, voice)
            if name in self._rebase:
                self._offsets[name] = max(0.0, self._reached(name) / self.ticks_per_beat - beat)
                self._rebase.discard(name)
            offset = self._offsets.get(name, 0.0)
        else:
            name, voice, key, offset = None, None, channel, 0.0
        track = self._tracks.get(key)
        tick = round((beat + offset) * self.ticks_per_beat)
        if track is not None:
            tick = max(track.tick, tick)
        note = note_of(message)
        wire = (channel, message[1])
        if note == "off":
            owner = self._sounding.pop(wire, None)
            if owner is None:
                self.dropped_offs += 1
                return
            track = self._tracks[owner[0]]
        elif track is None and voice is not None and note is None:
            # a voice's track begins with its first note; until then the last message of
            # each kind (program, each controller) waits for it
            kind = (message[0], message[1]) if message[0] & 0xF0 == 0xB0 else message[0]
            pending = self._pending.setdefault(key, {})
            pending.pop(kind, None)
            pending[kind] = (tick, message)
            return
        if track is None:
            title = (name if voice is None else f"{name} {voice}") if name is not None \
                else f"channel {channel + 1}"
            track = self._tracks[key] = _Track(title, name, voice)
            for at, waiting in sorted(self._pending.pop(key, {}).values(), key=lambda p: p[0]):
                track.add(at, waiting)
            tick = max(track.tick, tick)
        if note == "on" and wire in self._sounding:  # sounding already: it ends here
            owner = self._sounding.pop(wire)
            self._tracks[owner[0]].add(tick, (0x80 | wire[0], wire[1], 0))
        tick = track.add(tick, message)
        if note == "on":
            self._sounding[wire] = (key, tick)
        self._last_tick = max(self._last_tick, tick)

    def _endings(self):
        """{track key: [(tick, note-off bytes)]} ending every sounding note at the last
        beat (one tick after its note-on at least).  The caller holds self._lock."""
        out = {}
        for (channel, pitch), (key, tick_on) in self._sounding.items():
            end = max(self._last_tick, tick_on + 1, self._tracks[key].tick)
            out.setdefault(key, []).append((end, (0x80 | channel, pitch, 0)))
        for ends in out.values():
            ends.sort()
        return out

    def _snapshot(self, endings):
        """What the file needs, taken under self._lock (the caller holds it) without
        copying the recorded bytes: the tempo map, and each track's title, buffer,
        length and last tick, with ``endings`` to append.  Tracks only grow at the end,
        so ``_file_bytes`` can copy each buffer's first ``length`` bytes later, outside
        the lock, while the sender appends (a bytearray slice is one step under the GIL)."""
        keys = list(self._tracks) if self.split == "session" else sorted(self._tracks)
        # a voice's track is named by its voice alone while one session is recorded
        alone = len({t.session for t in self._tracks.values()}) == 1
        tracks = [(t.voice if alone and t.voice else t.title, t.data, len(t.data), t.tick,
                   endings.get(key, ()))
                  for key, t in ((k, self._tracks[k]) for k in keys)]
        # the last tempo for a tick wins
        return (sorted(dict(self._tempi).items()), sorted(self._markers, key=lambda m: m[0]),
                tracks)

    def _file_bytes(self, snapshot):
        """The whole .mid file from a ``_snapshot``; needs no lock."""
        tempi, markers, tracks = snapshot
        tempo = bytearray(_meta_name("tempo"))
        now = 0
        meta = [(tick, 0, b"\xff\x51\x03" + mido.bpm2tempo(bpm).to_bytes(3, "big"))
                for tick, bpm in tempi]
        meta += [(tick, 1, b"\xff\x06" + _varlen(len(text)) + text) for tick, _, text in markers]
        for tick, _, event in sorted(meta, key=lambda m: m[:2]):  # markers after a tempo
            tempo += _varlen(tick - now) + event
            now = tick
        chunks = [_chunk(b"MTrk", bytes(tempo) + _END_OF_TRACK)]
        # sessions in the order they first played, channels in channel order
        for title, data, length, now, endings in tracks:
            body = bytearray(_meta_name(title))
            body += data[:length]
            for tick, message in endings:
                body += _varlen(tick - now) + bytes(message)
                now = tick
            chunks.append(_chunk(b"MTrk", bytes(body) + _END_OF_TRACK))
        header = _chunk(b"MThd", (1).to_bytes(2, "big") + len(chunks).to_bytes(2, "big")
                        + self.ticks_per_beat.to_bytes(2, "big"))
        return header + b"".join(chunks)

    def _write(self, data):
        """``data`` to ``path`` atomically: a temporary file in its folder, then os.replace."""
        fd, tmp = tempfile.mkstemp(suffix=".mid.part", dir=os.path.dirname(self.path))
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, self.path)  # never leave a half-written file under the real name
        except BaseException as exc:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            if isinstance(exc, OSError):
                raise PortError(f"cannot write {self.path!r}: {exc}") from exc
            raise

    def checkpoint(self):
        """Write what is recorded so far, sounding notes closed at the last beat."""
        with self._lock:  # only what a send could change; the bytes are copied after
            snapshot = self._snapshot(self._endings())
            self._dirty = False
        self._write(self._file_bytes(snapshot))
        self.checkpoints += 1

    def _checkpoint_loop(self):
        deadline = time.monotonic() + self.checkpoint_s
        failed = False
        while not self._done.wait(max(0.0, deadline - time.monotonic())):
            deadline += self.checkpoint_s
            if deadline < time.monotonic():  # fell behind (a loaded machine): no burst
                deadline = time.monotonic() + self.checkpoint_s
            if not self._dirty:
                continue
            try:
                self.checkpoint()
                failed = False
            except (OSError, PortError) as exc:
                if not failed:  # once per run of failures, not once a second
                    log.error("recording checkpoint failed (will retry): %s", exc)
                failed = True

    def _close(self):
        self._done.set()
        if self._checkpointer is not None:
            self._checkpointer.join()
        with self._lock:
            for key, ends in self._endings().items():
                for tick, message in ends:
                    self._tracks[key].add(tick, message)
            self._sounding.clear()
            snapshot = self._snapshot({})
        self._write(self._file_bytes(snapshot))


def _check_beat(beat):
    try:
        beat = float(beat)
    except (TypeError, ValueError):
        beat = math.nan
    if not 0 <= beat < math.inf:
        raise InvalidMessage(f"beat must be a finite number >= 0, got {beat!r}",
                             field="beat", allowed=">= 0")
    return beat
