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
	music.stinger("hit", "now")
	music.start()
	music.tempo(1000)
	music.open_session("player2", "stealth")
	music.mood(null, 0.2, null, "bar", "player2")
	music.close_session("player2")
	music.ping()
	var sent = 12
	var replies = []
	var deadline = OS.get_ticks_msec() + 10000
	while replies.size() < sent and OS.get_ticks_msec() < deadline:
		replies += music.poll()
		OS.delay_msec(5)
	for r in replies:
		if r.ok:
			print("reply ", r.id, " ok ", r["for"], " ", r.data.get("type"))
		else:
			print("reply ", r.id, " error ", r.code, " ", r.field, " ", r.allowed)
	music.close()
	quit(0 if replies.size() == sent else 1)
