# Run by test_godot.py: godot3-server -s godot_client_test.gd, with OSTINATO_OSC_PORT and
# OSTINATO_GD (the path of bindings/godot/ostinato.gd) in the environment.
extends SceneTree


func _init():
	var Ostinato = load(OS.get_environment("OSTINATO_GD"))
	var music = Ostinato.new()
	var err = music.connect_to_server("127.0.0.1", int(OS.get_environment("OSTINATO_OSC_PORT")))
	if err != OK:
		print("connect failed ", err)
		quit(1)
		return
	music.hello()
	music.mood(0.5, 0.8, null, "now")
	music.state("combat")
	music.tempo(150, 4)
	music.key("d", "minor")
	# tonality and critic come after for_session ("": the default session)
	music.mood(null, null, null, "now", "", 0.9, 0)
	music.state("combat", "bar", "", 0.25)
	music.key("a", null, "beat", "", 0.75, 0.0)  # a whole float critic goes as the int 0
	music.mood(null, null, null, "bar", "", 1.5)  # tonality out of range on purpose
	music.mood(null, null, null, "bar", "", null, 3)  # refused: the test server has no critic
	music.mood(null, null, null, "bar", "", null, 2.5)  # not a whole number: goes as is, refused
	music.mood(null, null, 0.6)  # tonality and critic stay
	music.stinger("hit", "now")
	music.start()
	music.tempo(1000)
	music.open_session("player2", "stealth")
	music.mood(null, 0.2, null, "bar", "player2")
	music.close_session("player2")
	music.ping()
	# themes: by name or notes, and free, on any server
	music.theme("hero", 0.25, "beat")
	music.theme([[62, 0, 1], [65, 1, 1], [69, 2, 1], [74, 3, 1], [72, 4, 0.5], [70, 4.5, 0.5]], null, "now", 2)
	music.theme([[62, 0, 1], [65, 1, 1]])  # two notes: too few, refused on notes by any server
	music.free_theme("bar", 1.5)
	# repetition comes after voices (nil: left out)
	music.mood(null, null, null, "bar", "", null, null, null, 0.6)
	music.state("combat", "bar", "", null, null, null, 0.9)
	music.open_session("player3", "calm", null, 0.3)
	music.close_session("player3")
	music.mood(null, null, null, "bar", "", null, null, null, 1.5)  # out of range on purpose
	# style comes after repetition (a model told none refuses it, naming style)
	music.mood(null, null, null, "bar", "", null, null, null, null, "baroque")
	music.state("combat", "bar", "", null, null, null, null, "game")
	music.mood(null, null, null, "bar", "", null, null, null, null, "jazz")  # no such style
	var sent = 31
	var replies = []
	var deadline = OS.get_ticks_msec() + 10000
	while replies.size() < sent and OS.get_ticks_msec() < deadline:
		replies += music.poll()
		OS.delay_msec(5)
	for r in replies:
		if r.ok:
			print("reply ", r.id, " ok ", r["for"], " ", r.data.get("type"))
			if r.data.has("tonality") and r.data.has("critic"):  # mood, state, key: in effect now
				print("effect ", r.id, " ", r.data.tonality, " ", r.data.critic)
			if r.data.has("repetition"):  # mood, state, key, session open: in effect now
				print("repetition ", r.id, " ", r.data.repetition)
			if typeof(r.data.get("style")) == TYPE_STRING:  # the style in effect; null: none
				print("style ", r.id, " ", r.data.style)
			if typeof(r.data.get("theme")) == TYPE_DICTIONARY:  # what the server understood
				print("theme ", r.id, " ", r.data.theme.key, " ", r.data.theme.notes, " ", r.data.theme.source)
		else:
			print("reply ", r.id, " error ", r.code, " ", r.field, " ", r.allowed)
	music.close()
	quit(0 if replies.size() == sent else 1)
