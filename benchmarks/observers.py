"""What a storm (``benchmarks.storm``) is watched with: note counts (stuck notes, orphan
note-offs) of each output, a reader of the event stream and rtmidi's JACK reader.

Each observer turns what it saw into (key, is_on) pairs in the order played, and
``tally`` counts them: a key's note-on never ended is stuck, a note-off of a silent key
is an orphan.  The stream is keyed by (session, channel, pitch), a ``.mid`` file by
(track, channel, pitch), a JACK port by (channel, pitch): the channel is always the
key's second last part, so every count is also given per channel (an ensemble's voice
channels, the drums on channel 9, the stingers on channel 15).
"""
import json
import threading
import time

import zmq


def tally(notes):
    """{notes, stuck, orphan_offs, by_channel} of ``notes``: (key, is_on) pairs in the
    order played, each key ending in (channel, pitch).  A note-on of a key already
    sounding leaves the first one stuck.  ``by_channel``: {channel: {notes, stuck,
    orphan_offs}} of every channel that had a note or a note-off."""
    sounding, channels = {}, {}
    for key, is_on in notes:
        ch = channels.setdefault(key[-2], {"notes": 0, "stuck": 0, "orphan_offs": 0})
        if is_on:
            ch["notes"] += 1
            sounding[key] = sounding.get(key, 0) + 1
        elif sounding.get(key):
            sounding[key] -= 1
        else:
            ch["orphan_offs"] += 1
    for key, n in sounding.items():
        channels[key[-2]]["stuck"] += n
    total = {k: sum(c[k] for c in channels.values()) for k in ("notes", "stuck", "orphan_offs")}
    return dict(total, by_channel={c: channels[c] for c in sorted(channels)})


def wire_note(message):
    """(channel, pitch, is_on) of a note message's bytes, else None."""
    if len(message) != 3 or message[0] & 0xE0 != 0x80:
        return None
    return message[0] & 0x0F, message[1], message[0] & 0xF0 == 0x90 and message[2] > 0


def stream_notes(events):
    """((session, channel, pitch), is_on) of the note events of a decoded stream."""
    return [((e["session"], e["channel"], e["pitch"]), e["type"] == "note_on")
            for e in events if e["type"] in ("note_on", "note_off")]


def midi_file_tally(path):
    """tally() of a .mid file, every track read and each on its own ((track, channel,
    pitch) keys: an ensemble's recording has a track per session and voice), with
    ``tracks``: {track name: note-ons} of the tracks that hold notes."""
    import mido

    notes, tracks = [], {}
    for index, track in enumerate(mido.MidiFile(path).tracks):
        for msg in track:
            if msg.type in ("note_on", "note_off"):
                on = msg.type == "note_on" and msg.velocity > 0
                notes.append(((index, msg.channel, msg.note), on))
                name = track.name or f"track {index}"
                tracks[name] = tracks.get(name, 0) + on
    return dict(tally(notes), tracks=tracks)


def stream_voices(events):
    """{voice: note-ons} of a decoded stream, by each note event's ``voice`` field (a
    note without one counted under None)."""
    out = {}
    for e in events:
        if e["type"] == "note_on":
            out[e.get("voice")] = out.get(e.get("voice"), 0) + 1
    return out


def midi_file_beats(path, track_name):
    """[(beat, message)] of the notes of the track named ``track_name``."""
    import mido

    mid = mido.MidiFile(path)
    for track in mid.tracks:
        if track.name == track_name:
            tick, out = 0, []
            for msg in track:
                tick += msg.time
                if msg.type in ("note_on", "note_off"):
                    out.append((tick / mid.ticks_per_beat, msg))
            return out
    return []


class StreamReader:
    """Every frame of the event stream, on a thread of its own, decoded; ``gaps`` counts
    frames the subscriber missed (by ``seq``)."""

    def __init__(self, address, context):
        self.sock = context.socket(zmq.SUB)
        self.sock.setsockopt(zmq.SUBSCRIBE, b"")
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.RCVHWM, 0)
        self.sock.setsockopt(zmq.RECONNECT_IVL, 5)
        self.sock.connect(address)
        self.events = []
        self.gaps = 0
        self._cond = threading.Condition()
        self._quit = threading.Event()
        self._thread = threading.Thread(target=self._read, name="storm-stream", daemon=True)
        self._thread.start()

    def _read(self):
        last = None
        while not self._quit.is_set():
            if not self.sock.poll(50):
                continue
            while True:
                try:
                    event = json.loads(self.sock.recv(zmq.NOBLOCK))
                except zmq.Again:
                    break
                if last is not None and event["seq"] != last + 1:
                    self.gaps += event["seq"] - last - 1
                last = event["seq"]
                with self._cond:
                    self.events.append(event)
                    self._cond.notify_all()

    def wait_for(self, predicate, start=0, timeout_s=30.0):
        """Index of the first event from ``start`` on that satisfies ``predicate``, or None."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            i = start
            while True:
                while i < len(self.events):
                    if predicate(self.events[i]):
                        return i
                    i += 1
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._cond.wait(left)

    def settle(self, quiet_s=1.0, timeout_s=30.0):
        """Wait until no frame has come for ``quiet_s`` (the server has gone)."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while time.monotonic() < deadline:
                n = len(self.events)
                self._cond.wait(quiet_s)
                if len(self.events) == n:
                    return

    def close(self):
        self._quit.set()
        self._thread.join()
        self.sock.close()


class QueuedJackReader:
    """A second JACK client on one MIDI output port that reads through rtmidi's own
    queue, polled by a Python thread, so JACK's process thread never waits for the GIL.
    (``realtime.jack.JackMidiReader`` takes a callback, which does: on this loaded
    machine that lost runs of 15-35 messages in 2 of 4 short storms.)  ``messages``:
    [(time read, bytes)], the time being the poll's, not the arrival's."""

    def __init__(self, source, client_name, queue_size=1 << 16, timeout_s=10.0):
        self.source, self.client_name = source, client_name
        self.queue_size, self.timeout_s = queue_size, timeout_s
        self._messages = []
        self._lock = threading.Lock()
        self._quit = threading.Event()
        self._in = self._thread = None

    def __enter__(self):
        import rtmidi

        self._in = rtmidi.MidiIn(rtmidi.API_UNIX_JACK, name=self.client_name,
                                 queue_size_limit=self.queue_size)
        try:
            self._in.ignore_types(sysex=False, timing=False, active_sense=False)
            deadline = time.monotonic() + self.timeout_s
            while True:  # the server may have just registered its port
                ports = self._in.get_ports()
                matches = [i for i, p in enumerate(ports) if self.source in p]
                if len(matches) == 1:
                    self._in.open_port(matches[0], "in")
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"JACK port {self.source!r} did not appear: {ports}")
                time.sleep(0.02)
        except BaseException:
            self._in.delete()
            raise
        self._thread = threading.Thread(target=self._poll, name="storm-jack", daemon=True)
        self._thread.start()
        return self

    def _poll(self):
        get = self._in.get_message
        while not self._quit.is_set():
            got = get()
            if got is None:
                time.sleep(0.001)
                continue
            with self._lock:
                self._messages.append((time.monotonic_ns(), tuple(got[0])))

    @property
    def messages(self):
        with self._lock:
            return list(self._messages)

    def __exit__(self, *exc):
        self._quit.set()
        self._thread.join()
        self._in.close_port()
        self._in.delete()
        return False
