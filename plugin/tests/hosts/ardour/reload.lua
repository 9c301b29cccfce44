-- Session two, in a fresh process: load the saved session, roll from the start and record
-- what Cadenza plays; then save again.

start_engine ()
if not load_session (T.dir, T.name) then error ("cannot load " .. T.dir) end
local track = Session:route_by_name (T.track)
if track:isnil () then error ("the loaded session has no track " .. T.track) end
local _, _, recorder = track_plugins (track)

-- A musician opens the project and then presses play: Cadenza restores its state off the audio thread.
ARDOUR.LuaAPI.usleep (1000000)
roll_until_heard (recorder, T.beats_after_first_note)
write_events (recorder, T.events)
Session:save_state ("")
close_session ()
print ("session saved")
quit ()
