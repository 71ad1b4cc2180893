# ostinato.gd - Godot 3 (3.2+) client for Ostinato's OSC endpoint (protocol version 1).
#
# Sends OSC over PacketPeerUDP to the server (default 127.0.0.1:9000) and reads the replies
# (/ostinato/ack, /ostinato/error) that come back to the same socket.  Nothing blocks: call
# poll() once a frame (e.g. from _process) to collect replies.
#
#   var Ostinato = preload("res://addons/ostinato/ostinato.gd")
#   var music = Ostinato.new()
#   music.connect_to_server()            # "127.0.0.1", 9000
#   music.state("combat")
#   music.mood(null, 0.9)                # arousal up, valence/intensity kept
#   music.mood(null, null, null, "bar", "", 0.8, 0)   # tonality 0.8, critic off
#   music.theme("hero")                  # a leitmotif, stated by the melody
#   music.theme([[62, 0, 1], [65, 1, 1], [69, 2, 1]], 0.2)   # notes: pitch, start, length
#   music.mood(null, null, null, "bar", "", null, null, {"drums": false})   # an ensemble's voices
#   music.mood(null, null, null, "bar", "", null, null, null, 0.8)   # repetition: recalls, loops
#   music.mood(null, null, null, "bar", "", null, null, null, null, "baroque")   # a model's style
#   for reply in music.poll(): if not reply.ok: push_warning(reply.message)
#
# The music's events (notes, mood, tempo, ...) come over the same socket after subscribe():
#   music.subscribe(["note_on", "note_off"])   # [] : every type but beat, bar, phrase
#   music.subscribe(["beat", "cue"])     # play along: the sync events are opt-in
#   music.cue("door", "bar"); music.position(); music.stinger_notes(notes, "cue:door")
#   music.sync_clock()                   # pings (about 1 ms): Godot's clock on the server's
#   (each frame) music.poll(); for e in music.take_events(): schedule e at music.due_in(e)
extends Reference

var _udp = PacketPeerUDP.new()
var _next_id = 1
var session = ""  # default session for messages; "" = the server's "main"
# The server's clock minus this one's (OS.get_ticks_usec), in microseconds, from the pong
# with the shortest round trip so far (sync_clock); 0 until a pong arrives.
var clock_offset_usec = 0.0
var clock_rtt_usec = -1  # that pong's round trip; -1: none yet
var _pings = {}  # ping id -> OS.get_ticks_usec() when it was sent
var _events = []  # received by poll(), handed out by take_events()
var _held = []  # replies poll() read during sync_clock, for the next poll()


func connect_to_server(host = "127.0.0.1", port = 9000):
	"""Bind an ephemeral local port and aim at the server; returns OK or an Error."""
	var err = _udp.listen(0, "*")
	if err != OK:
		return err
	return _udp.set_dest_address(host, port)


func close():
	_udp.close()


# ------------------------------------------------------------------ messages
# Each returns the request id; the reply with that id comes out of poll().
# mood, state and key take tonality (0 free .. 1 strict, a float) and critic (drafts of each
# beat the discriminator judges, 0..16, sent as an OSC int; above 0 needs `serve --critic`)
# last, after for_session, so that older calls passing for_session keep working.  null
# leaves them out: they go as OSC nil, which the server reads as "not given" (mood, key:
# the session's values stay; state: the preset's, else the server's default).  The ack's data
# carries both in effect.
# mood, state and open_session take voices last (a server with an ensemble model): a
# Dictionary {voice name: true (forced on) | false (off) | "auto" (layering by intensity and
# arousal) | {"play", "program", "channel", "octave"}}, e.g. {"drums": false, "harmony":
# {"program": 89}}, sent as JSON text (OSC has no objects); null leaves them out.  They change
# at the next bar line.
# mood, state and open_session take repetition after voices: how much the music repeats
# itself along the session's form, 0 through-composed .. 1 a loop (a float), from the next
# bar line; null leaves it out (mood: the session's stays; state, open_session: the preset's,
# else the server's default).  The ack's data carries it in effect.
# mood and state take style after repetition (a server whose model is told styles, the hello
# ack's data.capabilities.styles): the texture asked of the model, as the collection it learned
# it from plays, "game", "baroque", "classical" or "renaissance", from the transition; null
# leaves it out (mood: the session's stays; state: the preset's, else none).  The ack's data
# carries it in effect (null: none, the mix of them all); a model told no styles answers an
# error naming style (out_of_range), any server one it does not know (bad_choice).

func hello():
	return send("hello", [])


func mood(valence = null, arousal = null, intensity = null, transition = "bar", for_session = "",
		tonality = null, critic = null, voices = null, repetition = null, style = null):
	return send("mood", [_num(valence), _num(arousal), _num(intensity), transition, _num(tonality),
			_int(critic), _json(voices), _num(repetition), style], for_session)


# state's transition left null (OSC nil): states.toml's rule for this pair of presets
# ([[transitions]]), else "bar"; the ack's data names the rule and the pickup_beat.
func state(name, transition = null, for_session = "", tonality = null, critic = null,
		voices = null, repetition = null, style = null):
	return send("state", [name, transition, _num(tonality), _int(critic), _json(voices),
			_num(repetition), style], for_session)


func tempo(bpm, ramp_beats = 0.0, transition = "beat", for_session = ""):
	return send("tempo", [float(bpm), float(ramp_beats), transition], for_session)


func key(key_name, mode = null, transition = "bar", for_session = "", tonality = null, critic = null):
	return send("key", [key_name, mode, transition, _num(tonality), _int(critic)], for_session)


func stinger(name, transition = "beat", for_session = ""):
	return send("stinger", [name, transition], for_session)


# A stinger of your own: an Array of [pitch, start_beat, duration_beats] in any key (moved to
# the session's, over its harmony), sent as JSON text and checked as a theme's notes.
# min_interval_beats (0..64) and queue ("drop" or "queue") say what happens to it within that
# many beats of its last playing; null leaves them out (0, "drop").  The ack's data says
# whether it played (played, beat, t_ns) or not (reason, next_beat).
func stinger_notes(notes, transition = "beat", min_interval_beats = null, queue = null,
		for_session = ""):
	# positional: name (nil), transition, min_interval_beats, queue, notes
	return send("stinger", [null, transition, _num(min_interval_beats), queue, JSON.print(notes)],
			for_session)


# Place cue ``name`` at the next grid point ``at`` ("beat", "bar", "phrase", "bars:N") or, if
# ``beat`` is given, at that beat of the session (ahead of it).  The ack's data gives its beat
# and t_ns; a subscriber to "cue" gets a cue event when it plays, and a transition
# "cue:NAME" lands there.  Placing a name again moves it.
func cue(name, at = "bar", beat = null, for_session = ""):
	return send("cue", [name, at, _num(beat)], for_session)


# Where the music is: the ack's data has beat, bar, beat_in_bar, phrase, bar_in_phrase,
# phrase_bars, bpm, key, mode, state, transport, t_ns (the server's now), next_downbeat and
# next_phrase (beats) with next_downbeat_t_ns and next_phrase_t_ns (exact integers:
# due_in(data.next_downbeat_t_ns) is when the next bar line plays here) and cues.
func position(for_session = ""):
	return send("position", [], for_session)


# theme has the melody state a leitmotif, in the session's key and mode, on any server
# (a theme model's also steers the music towards it).  name_or_notes: a String,
# the name of one of states.toml's [themes], or an Array of [pitch, start_beat, duration_beats]
# (MIDI pitches, any key), sent as JSON text (OSC has no arrays; whole numbers print as
# integers).  variation (0 close to the theme .. 1 free) and blend_beats (beats over which the
# music moves to it; 0 starts its phrase at the transition): null leaves them out (the server's
# defaults, 0.3 and 0).  The ack's data.theme says what was understood (key, bars, notes, source).
func theme(name_or_notes, variation = null, transition = "bar", blend_beats = null, for_session = ""):
	if typeof(name_or_notes) == TYPE_STRING:
		return send("theme", [name_or_notes, _num(variation), transition, _num(blend_beats)],
				for_session)
	# positional: name (nil), variation, transition, blend_beats, action (nil: set), notes
	return send("theme", [null, _num(variation), transition, _num(blend_beats), null,
			JSON.print(name_or_notes)], for_session)


# Back to free composition (fine on any server), at the transition or over blend_beats beats.
func free_theme(transition = "bar", blend_beats = null, for_session = ""):
	return send("theme", [null, null, transition, _num(blend_beats), "free"], for_session)


func start(for_session = ""):
	return send("start", [], for_session)


func stop(for_session = ""):
	return send("stop", [], for_session)


func pause(for_session = ""):
	return send("pause", [], for_session)


func open_session(id, start_state = null, voices = null, repetition = null):
	var args = ["open", id]
	if start_state != null or voices != null or repetition != null:
		args.append(start_state)  # nil: the server's initial preset
	if voices != null or repetition != null:
		args.append(_json(voices))
	if repetition != null:
		args.append(_num(repetition))
	return send("session", args)


func close_session(id):
	return send("session", ["close", id])


func ping():
	var id = send("ping", [])
	_pings[id] = OS.get_ticks_usec()
	return id


func sync_clock(pings = 8, timeout_msec = 100):
	"""Ping ``pings`` times, each waiting (blocking, polling without sleep) up to timeout_msec
	for its pong, so the round trip is the network's and not a frame's: clock_offset_usec
	becomes the server's clock minus this one's at the midpoint of the shortest round trip.
	The server's clock (CLOCK_MONOTONIC) is not Godot's (ticks since the engine started).
	Call it at start (on one machine it blocks about a millisecond in all), and now and then
	if the game runs for hours.  Replies that came meanwhile are kept for poll().  Returns
	true if a pong came."""
	for i in range(pings):
		var id = ping()
		var deadline = OS.get_ticks_msec() + timeout_msec
		while _pings.has(id) and OS.get_ticks_msec() < deadline:
			_held = poll()
		_pings.erase(id)  # a pong later than that is not timed
	return clock_rtt_usec >= 0


# The server relays its event stream to this socket: each event arrives, as early as the
# server publishes it (serve --events-ahead MS), in an OSC bundle timetagged with its time.
# types: event type names (note_on, note_off, mood, tempo, transport, state, key, theme,
# theme_return, cue, stinger, and the sync types beat, bar, phrase); [] for every type but
# the sync ones, which come only when named (e.g. ["beat", "cue"]).  A sync event has bar,
# beat_in_bar, phrase, bar_in_phrase and bpm, and the t_ns of a note on its beat: schedule it
# with due_in as a note.  Every session's events come (each names its session).
# Subscribing again replaces the types; unsubscribe() ends it.
func subscribe(types = []):
	return send("subscribe", types)


func unsubscribe():
	return send("unsubscribe", [])


func take_events():
	"""The events poll() has received since the last call, oldest first, as Dictionaries:
	type, session, seq, t_ns (the server's clock, ns), beat; notes channel, pitch, velocity
	and voice (melody, bass, harmony, drums or stinger; absent where the server knows none);
	other types their fields from the event's JSON."""
	var out = _events
	_events = []
	return out


func due_in(event):
	"""Seconds from now until ``event`` is due (negative: late), on this machine's clock, by
	clock_offset_usec: schedule the note that far ahead (e.g. an AudioStreamPlayer started
	from a timer, or a sample offset in an AudioStreamGenerator buffer).  ``event`` may also
	be a time itself, in ns on the server's clock (position's next_downbeat_t_ns)."""
	var t_ns = event.t_ns if typeof(event) == TYPE_DICTIONARY else event
	return (t_ns / 1000.0 - (OS.get_ticks_usec() + clock_offset_usec)) / 1e6


func send(type, args, for_session = ""):
	"""Send /ostinato/<type> with positional args (null = keep current) plus session and id."""
	var id = _next_id
	_next_id += 1
	var all = args.duplicate()
	var s = for_session if for_session != "" else session
	if s != "" and type != "session":
		all += ["session", s]
	all += ["id", id]
	_udp.put_packet(_encode("/ostinato/" + type, all))
	return id


func poll():
	"""Every reply received so far, as Dictionaries: ok, for, id, code, field, allowed, message, data."""
	var replies = _held
	_held = []
	while _udp.get_available_packet_count() > 0:
		for msg in _decode_packet(_udp.get_packet()):
			var args = msg.args
			if msg.address.begins_with("/ostinato/event/") and args.size() >= 4:
				_events.append(_event(msg.address.substr(16, msg.address.length() - 16), args))
			elif msg.address == "/ostinato/ack" and args.size() >= 3:
				var parsed = JSON.parse(args[2])
				var reply = {"ok": true, "for": args[0], "id": args[1],
						"data": _exact_times(args[2], parsed.result) if parsed.error == OK else {}}
				if reply["for"] == "ping":
					_pong(reply)
				replies.append(reply)
			elif msg.address == "/ostinato/error" and args.size() >= 5:
				replies.append({"ok": false, "code": args[0], "field": args[1], "allowed": args[2],
						"message": args[3], "id": args[4]})
	return replies


func _pong(reply):
	var now = OS.get_ticks_usec()
	var sent = _pings.get(reply.id)
	_pings.erase(reply.id)
	if sent == null or typeof(reply.data) != TYPE_DICTIONARY or not reply.data.has("t_ns"):
		return
	var rtt = now - sent
	if clock_rtt_usec < 0 or rtt < clock_rtt_usec:
		clock_rtt_usec = rtt
		clock_offset_usec = reply.data.t_ns / 1000.0 - (sent + now) / 2.0


func _event(type, args):
	# /ostinato/event/<type> session seq t_ns beat, then channel pitch velocity [voice] (notes)
	# or the event's JSON (the other types)
	var event = {"type": type, "session": args[0], "seq": args[1], "t_ns": args[2], "beat": args[3]}
	if type == "note_on" or type == "note_off":
		if args.size() >= 7:
			event["channel"] = args[4]
			event["pitch"] = args[5]
			event["velocity"] = args[6]
		if args.size() >= 8:
			event["voice"] = args[7]
	elif args.size() >= 5:
		var parsed = JSON.parse(args[4])
		if parsed.error == OK and typeof(parsed.result) == TYPE_DICTIONARY:
			for k in parsed.result:
				if not event.has(k):
					event[k] = parsed.result[k]
	return event


func _exact_times(text, data):
	# Godot's JSON reads every number as a float (53 bits); the reply's own t_ns and
	# *_t_ns members are read again from the text as 64-bit integers.
	if typeof(data) != TYPE_DICTIONARY:
		return data
	var times = RegEx.new()
	times.compile('"([a-z_]*t_ns)":(-?[0-9]+)[,}]')
	for m in times.search_all(text):
		if data.has(m.get_string(1)):
			data[m.get_string(1)] = _int64(m.get_string(2))
	return data


func _int64(digits):
	# String.to_int() stops at 32 bits in Godot 3
	var negative = digits.begins_with("-")
	var v = 0
	for ch in digits.substr(1 if negative else 0, digits.length()):
		v = v * 10 + (ord(ch) - 48)
	return -v if negative else v


# ------------------------------------------------------------------ OSC 1.0 encoding

func _num(value):
	return null if value == null else float(value)


func _json(value):
	# voices go as JSON text; a String is taken to be JSON already
	if value == null or typeof(value) == TYPE_STRING:
		return value
	return JSON.print(value)


func _int(value):
	# critic is an integer field: 3.0 goes as the OSC int 3 (a float would be bad_type);
	# a fractional number or other type goes as is, for the server to refuse and name.
	if typeof(value) == TYPE_REAL and value == floor(value):
		return int(value)
	return value


func _encode(address, args):
	var buf = StreamPeerBuffer.new()
	buf.big_endian = true
	_put_string(buf, address)
	var tags = ","
	for a in args:
		match typeof(a):
			TYPE_INT:
				tags += "i"
			TYPE_REAL:
				tags += "f"
			TYPE_NIL:
				tags += "N"
			_:
				tags += "s"
	_put_string(buf, tags)
	for a in args:
		match typeof(a):
			TYPE_INT:
				buf.put_32(a)
			TYPE_REAL:
				buf.put_float(a)
			TYPE_NIL:
				pass
			_:
				_put_string(buf, str(a))
	return buf.data_array


func _put_string(buf, text):
	var bytes = text.to_utf8()
	buf.put_data(bytes)
	for i in range(4 - bytes.size() % 4):  # NUL-terminated, padded to 4 bytes
		buf.put_u8(0)


func _decode_packet(packet):
	"""The messages of one datagram: a message, or a bundle's (nested bundles too)."""
	if packet.size() >= 16 and packet.subarray(0, 7).get_string_from_ascii() == "#bundle":
		var messages = []
		var buf = StreamPeerBuffer.new()
		buf.big_endian = true
		buf.data_array = packet
		buf.seek(16)  # "#bundle\0" and the 8-byte timetag (the event's t_ns says the same)
		while buf.get_position() + 4 <= packet.size():
			var size = buf.get_32()
			var start = buf.get_position()
			if size <= 0 or start + size > packet.size():
				break
			messages += _decode_packet(packet.subarray(start, start + size - 1))
			buf.seek(start + size)
		return messages
	var msg = _decode(packet)
	return [] if msg.empty() else [msg]


func _decode(packet):
	var buf = StreamPeerBuffer.new()
	buf.big_endian = true
	buf.data_array = packet
	var address = _get_string(buf)
	var tags = _get_string(buf)
	if not tags.begins_with(","):
		return {}
	var args = []
	for tag in tags.substr(1, tags.length() - 1):
		match tag:
			"i":
				args.append(buf.get_32())
			"h":
				args.append(buf.get_64())
			"f":
				args.append(buf.get_float())
			"d":
				args.append(buf.get_double())
			"s":
				args.append(_get_string(buf))
			"T":
				args.append(true)
			"F":
				args.append(false)
			"N":
				args.append(null)
			_:
				return {}
	return {"address": address, "args": args}


func _get_string(buf):
	var data = buf.data_array
	var start = buf.get_position()
	var end = start
	while end < data.size() and data[end] != 0:
		end += 1
	var text = "" if end == start else data.subarray(start, end - 1).get_string_from_utf8()
	buf.seek(min((end + 4) & ~3, data.size()))
	return text
