-- Session one: a MIDI track phrase source -> Cadenza -> recorder at T.tempo_bpm; the phrase
-- plays, an automation lane presses Generate, the variation plays; then save.

start_engine ()
if not create_session (T.dir, T.name, T.sample_rate) then error ("cannot create " .. T.dir) end

local tempo = Temporal.TempoMap.fetch_writable ()
tempo:set_tempo (Temporal.Tempo (T.tempo_bpm, T.tempo_bpm, 4), Temporal.timepos_t (0))
Temporal.TempoMap.update (tempo)

-- Cadenza goes in with the track: adding it to an existing track sometimes aborted Ardour
-- ("Port already exists").
local info = ARDOUR.LuaAPI.new_plugin_info ("Cadenza", ARDOUR.PluginType.VST3)
if info:isnil () then error ("Cadenza is not in Ardour's VST3 scan cache") end
local tracks = Session:new_midi_track (
	ARDOUR.ChanCount (ARDOUR.DataType ("midi"), 1), ARDOUR.ChanCount (ARDOUR.DataType ("audio"), 2),
	false, info, nil, nil, 1, T.track, ARDOUR.PresentationInfo.max_order, ARDOUR.TrackMode.Normal, true)
if tracks:size () ~= 1 then error ("no MIDI track") end
local track = tracks:front ()

for i, name in ipairs ({ "Cadenza Test Phrase", "Cadenza Test Recorder" }) do
	local proc = ARDOUR.LuaAPI.new_luaproc (Session, name)
	if proc:isnil () then error ("no Lua DSP script " .. name) end
	-- The phrase before Cadenza (plugin 0), the recorder after it (plugin 2).
	if track:add_processor_by_index (proc, 2 * (i - 1), nil, true) ~= 0 then error ("cannot add " .. name) end
end
local _, cadenza, recorder = track_plugins (track)

for name, value in pairs (T.settings) do set_param (cadenza, name, value) end

-- Generate pressed and released by its automation lane.
local generate = param_index (cadenza, "Generate")
local lane, events = ARDOUR.LuaAPI.plugin_automation (cadenza, generate)
if lane:isnil () then error ("Generate has no automation lane") end
events:add (Temporal.timepos_t (0), 0, false, false)
events:add (Temporal.timepos_t (T.press_sample), 1, false, false)
events:add (Temporal.timepos_t (T.release_sample), 0, false, false)
local control = cadenza:to_automatable ():automation_control (
	Evoral.Parameter (ARDOUR.AutomationType.PluginAutomation, 0, generate), false)
if control:isnil () then error ("Generate has no automation control") end
control:set_automation_state (ARDOUR.AutoState.Play)

roll_until_heard (recorder, T.beats_after_first_note)
write_events (recorder, T.events)

-- The lane back to manual, so that rolling the loaded session plays what was saved rather
-- than pressing Generate again.
control:set_automation_state (ARDOUR.AutoState.Off)
Session:save_state ("")
close_session ()
print ("session saved")
quit ()
