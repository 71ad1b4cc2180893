# Run by test_godot.py: godot3-server -s godot_events_test.gd, with OSTINATO_OSC_PORT and
# OSTINATO_GD in the environment, against a server that plays and relays its events.
extends SceneTree


func _init():
	var Ostinato = load(OS.get_environment("OSTINATO_GD"))
	var music = Ostinato.new()
	if music.connect_to_server("127.0.0.1", int(OS.get_environment("OSTINATO_OSC_PORT"))) != OK:
		print("connect failed")
		quit(1)
		return
	music.subscribe(["nope"])  # refused: no such event type
	music.subscribe(["note_on", "note_off"])
	music.sync_clock(8)
	var replies = []
	var events = []
	var deadline = OS.get_ticks_msec() + 20000
	while (events.size() < 20 or replies.size() < 10) and OS.get_ticks_msec() < deadline:
		replies += music.poll()
		for e in music.take_events():
			var before = OS.get_ticks_usec()
			var due = music.due_in(e)
			var after = OS.get_ticks_usec()
			print("event ", e.type, " ", e.session, " ", e.seq, " ", e.t_ns, " ", e.pitch, " ",
					e.velocity, " ", e.channel, " ", "%.9f" % due, " ", before, " ", after)
			events.append(e)
		OS.delay_msec(2)
	for r in replies:
		if r.ok:
			print("reply ", r.id, " ok ", r["for"], " ", JSON.print(r.data.get("types")))
		else:
			print("reply ", r.id, " error ", r.code, " ", r.field)
	print("clock ", music.clock_rtt_usec, " ", "%.3f" % music.clock_offset_usec, " ",
			"%.3f" % (OS.get_ticks_usec() + music.clock_offset_usec))
	# after unsubscribing, once what was in flight has come, nothing more comes
	music.unsubscribe()
	var acked = false
	deadline = OS.get_ticks_msec() + 5000
	while not acked and OS.get_ticks_msec() < deadline:
		for r in music.poll():
			acked = acked or (r.ok and r["for"] == "unsubscribe")
		OS.delay_msec(2)
	OS.delay_msec(300)
	music.poll()
	music.take_events()
	OS.delay_msec(500)
	music.poll()
	print("unsubscribed ", acked, " then ", music.take_events().size(), " events")
	music.close()
	quit(0)
