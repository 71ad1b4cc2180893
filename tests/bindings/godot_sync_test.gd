# Run by test_sync_godot.py: godot3-server -s godot_sync_test.gd, with OSTINATO_OSC_PORT,
# OSTINATO_GD (ostinato.gd) and OSTINATO_SYNC_EXAMPLE (sync_example.gd) in the environment,
# against a server that plays and relays its events.  The example runs in the scene tree as
# in a game; what its signals bring is printed in the lines test_sync_c.check_sync_run reads.
extends SceneTree

var example
var beats = 0
var opened = false
var started = false
var deadline = 0


func _init():
	Engine.target_fps = 250  # a game's frame rate, not a spin
	example = load(OS.get_environment("OSTINATO_SYNC_EXAMPLE")).new()
	example.port = int(OS.get_environment("OSTINATO_OSC_PORT"))
	example.ostinato_path = OS.get_environment("OSTINATO_GD")
	example.connect("beat", self, "_on_beat")
	example.connect("bar", self, "_on_bar")
	example.connect("door_opens", self, "_on_door")
	example.connect("cutscene", self, "_on_cutscene")
	root.add_child(example)
	deadline = OS.get_ticks_msec() + 30000


func _late(t_ns):
	return str(int(round(-example.music.due_in(t_ns) * 1e9)))


func _on_beat(e):
	print("beat ", e.beat, " ", e.bar, " ", e.beat_in_bar, " ", e.bpm, " ", e.t_ns, " ", _late(e.t_ns))
	beats += 1


func _on_bar(e):
	print("bar ", e.beat, " ", e.bar, " ", e.t_ns, " ", _late(e.t_ns))


func _on_door(e):
	print("door ", e.beat, " ", e.t_ns, " ", _late(e.t_ns))
	opened = true


func _on_cutscene(t_ns):
	print("cutscene ", t_ns, " ", _late(t_ns))
	started = true


func _idle(_delta):
	var done = beats >= 6 and opened and started and not example.fanfare.empty()
	if done or OS.get_ticks_msec() > deadline:
		var here = example.here
		print("position ", here.get("beat"), " ", here.get("bar"), " ", here.get("bpm"), " ",
				here.get("next_downbeat"), " ", here.get("next_downbeat_t_ns"))
		print("cue-placed door ", example.door.get("beat"), " ", example.door.get("t_ns"))
		print("stinger played ", 1 if example.fanfare.get("played") else 0, " ",
				example.fanfare.get("beat"))
		print("types ", typeof(here.get("next_downbeat_t_ns")), " ", typeof(example.door.get("t_ns")))
		root.remove_child(example)
		example.free()
		quit(0 if done else 1)
	return false
