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
#   music.theme("hero")                  # a leitmotif (needs a server with a theme model)
#   music.theme([[62, 0, 1], [65, 1, 1], [69, 2, 1]], 0.2)   # notes: pitch, start, length
#   for reply in music.poll(): if not reply.ok: push_warning(reply.message)
extends Reference

var _udp = PacketPeerUDP.new()
var _next_id = 1
var session = ""  # default session for messages; "" = the server's "main"


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

func hello():
	return send("hello", [])


func mood(valence = null, arousal = null, intensity = null, transition = "bar", for_session = "",
		tonality = null, critic = null):
	return send("mood", [_num(valence), _num(arousal), _num(intensity), transition, _num(tonality),
			_int(critic)], for_session)


func state(name, transition = "bar", for_session = "", tonality = null, critic = null):
	return send("state", [name, transition, _num(tonality), _int(critic)], for_session)


func tempo(bpm, ramp_beats = 0.0, transition = "beat", for_session = ""):
	return send("tempo", [float(bpm), float(ramp_beats), transition], for_session)


func key(key_name, mode = null, transition = "bar", for_session = "", tonality = null, critic = null):
	return send("key", [key_name, mode, transition, _num(tonality), _int(critic)], for_session)


func stinger(name, transition = "beat", for_session = ""):
	return send("stinger", [name, transition], for_session)


# theme composes from a leitmotif, in the session's key and mode, on a server whose model is
# a theme model (others answer out_of_range on field notes or name).  name_or_notes: a String,
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


func open_session(id, start_state = null):
	var args = ["open", id]
	if start_state != null:
		args.append(start_state)
	return send("session", args)


func close_session(id):
	return send("session", ["close", id])


func ping():
	return send("ping", [])


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
	var replies = []
	while _udp.get_available_packet_count() > 0:
		var msg = _decode(_udp.get_packet())
		if msg.empty():
			continue
		var args = msg.args
		if msg.address == "/ostinato/ack" and args.size() >= 3:
			var parsed = JSON.parse(args[2])
			replies.append({"ok": true, "for": args[0], "id": args[1],
					"data": parsed.result if parsed.error == OK else {}})
		elif msg.address == "/ostinato/error" and args.size() >= 5:
			replies.append({"ok": false, "code": args[0], "field": args[1], "allowed": args[2],
					"message": args[3], "id": args[4]})
	return replies


# ------------------------------------------------------------------ OSC 1.0 encoding

func _num(value):
	return null if value == null else float(value)


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
