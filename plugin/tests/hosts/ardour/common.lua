-- What both session scripts share. The test puts its settings in the table T before this.

-- The track's three plugins, in order, or an error naming what is there instead.
function track_plugins (track)
	local want = { "Cadenza Test Phrase", "Cadenza", "Cadenza Test Recorder" }
	local found = {}
	for i, name in ipairs (want) do
		local p = track:nth_plugin (i - 1)
		if p:isnil () or p:name () ~= name then
			error (string.format ("plugin %d of the track is %s, not %s", i - 1, p:isnil () and "missing" or p:name (), name))
		end
		found[i] = p
	end
	return found[1], found[2], found[3]
end

-- The control index of a plugin parameter by its name.
function param_index (proc, name)
	local plugin = proc:to_insert ():plugin (0)
	for j = 0, plugin:parameter_count () - 1 do
		if plugin:parameter_label (j) == name then return j end
	end
	error ("Cadenza has no parameter " .. name)
end

function set_param (proc, name, value)
	if not ARDOUR.LuaAPI.set_processor_param (proc, param_index (proc, name), value) then
		error ("cannot set " .. name)
	end
end

local function recorded (recorder)
	local shm = recorder:to_insert ():plugin (0):to_luaproc ():shmem ()
	return shm:atomic_get_int (0), shm:to_int (1):array ()
end

local function first_note_on (recorder)
	local n, ev = recorded (recorder)
	for k = 0, n - 1 do
		if ev[4 * k + 2] & 0xf0 == 0x90 and ev[4 * k + 4] > 0 then return ev[4 * k + 1] end
	end
	return nil
end

-- Roll from the start until a note reaches the recorder, then for `beats_after` more beats; stop.
-- Gives up (an error) after T.timeout_s without a note.
function roll_until_heard (recorder, beats_after)
	local step_us = 20000
	local samples_per_beat = T.sample_rate * 60 / T.tempo_bpm
	Session:request_roll (ARDOUR.TransportRequestSource.TRS_UI)
	local first = nil
	local waited_us = 0
	while true do
		ARDOUR.LuaAPI.usleep (step_us)
		waited_us = waited_us + step_us
		first = first or first_note_on (recorder)
		if first and Session:transport_sample () > first + beats_after * samples_per_beat then break end
		if not first and waited_us > T.timeout_s * 1000000 then
			Session:request_stop (false, false, ARDOUR.TransportRequestSource.TRS_UI)
			error (string.format ("no note reached the recorder in %d s (transport at sample %d)", T.timeout_s, Session:transport_sample ()))
		end
	end
	Session:request_stop (false, false, ARDOUR.TransportRequestSource.TRS_UI)
	while Session:transport_rolling () do ARDOUR.LuaAPI.usleep (step_us) end
end

-- The recorder's events, one "sample status data1 data2" line each, after a line with the block size.
function write_events (recorder, path)
	local n, ev = recorded (recorder)
	local f = assert (io.open (path, "w"))
	f:write (string.format ("block %d\n", Session:get_block_size ()))
	for k = 0, n - 1 do
		f:write (string.format ("%d %d %d %d\n", ev[4 * k + 1], ev[4 * k + 2], ev[4 * k + 3], ev[4 * k + 4]))
	end
	f:close ()
end

function start_engine ()
	AudioEngine:set_backend ("None (Dummy)", "", "")
	if not AudioEngine:current_backend_name ():find ("Dummy") then
		error ("no Dummy backend: " .. AudioEngine:current_backend_name ())
	end
end
