# sync_example.gd - play along with the music in Godot 3: flash on the beat, open a door on a
# cue, start a cutscene on the next downbeat.  Attach it to a Node (ostinato.gd at
# ostinato_path) and connect its signals to the game:
#
#   beat(event)          every beat: flash the crosshair (event.bar, event.beat_in_bar, bpm)
#   bar(event)           every bar line
#   door_opens(event)    the "door" cue plays (placed on the bar after the next one)
#   cutscene(t_ns)       the next downbeat after the stream came live (position's)
#
# Each happens at its time: an event comes early (serve --events-ahead 40) and is put off
# by a timer for due_in(event) seconds, as a note would be.  The door also gets a fanfare,
# a stinger sent as notes, on its cue (transition "cue:door").
extends Node

signal beat(event)
signal bar(event)
signal door_opens(event)
signal cutscene(t_ns)

export var host = "127.0.0.1"
export var port = 9000
export var ostinato_path = "res://addons/ostinato/ostinato.gd"

const FANFARE = [[60, 0, 0.5], [64, 0.5, 0.5], [67, 1, 1]]  # pitch, start, length; any key

var music
var here = {}     # position's reply, once asked
var door = {}     # the cue's reply: its beat and t_ns
var fanfare = {}  # the stinger's reply: played, beat
var _position_id = -1
var _cue_id = -1
var _stinger_id = -1


func _ready():
	music = load(ostinato_path).new()
	music.connect_to_server(host, port)
	music.subscribe(["beat", "bar", "cue"])  # the sync events are opt-in
	music.sync_clock()


func _process(_delta):
	for reply in music.poll():
		if not reply.ok:
			push_warning("ostinato: %s %s" % [reply.field, reply.message])
		elif reply.id == _position_id:
			here = reply.data
			_at(here.next_downbeat_t_ns, "_cutscene", [here.next_downbeat_t_ns])
			# the next bar line ("bar") may come before the fanfare is placed on it: one further
			_cue_id = music.cue("door", null, here.next_downbeat + 4)
		elif reply.id == _cue_id:
			door = reply.data
			_stinger_id = music.stinger_notes(FANFARE, "cue:door", 8)
		elif reply.id == _stinger_id:
			fanfare = reply.data
	for e in music.take_events():
		if _position_id < 0:
			_position_id = music.position()  # the stream is live: where is the music?
		_at(e.t_ns, "_" + e.type, [e])  # as a note: at its t_ns


func _exit_tree():
	music.unsubscribe()
	music.close()


func _at(t_ns, method, args):
	"""Call method(args) when t_ns (the server's clock) comes: a timer (a frame's grain);
	at once if it is due already."""
	var wait = music.due_in(t_ns) - AudioServer.get_output_latency()  # what the player hears
	if wait <= 0:
		callv(method, args)
	else:
		get_tree().create_timer(wait).connect("timeout", self, method, args)


func _beat(e):
	emit_signal("beat", e)


func _bar(e):
	emit_signal("bar", e)


func _cue(e):
	if e.name == "door":
		emit_signal("door_opens", e)


func _cutscene(t_ns):
	emit_signal("cutscene", t_ns)
