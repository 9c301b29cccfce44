ardour {
	["type"]    = "dsp",
	name        = "Cadenza Test Recorder",
	category    = "Utility",
	license     = "MIT",
	author      = "Cadenza",
	description = [[Keeps every MIDI event that reaches it with its session sample, for Cadenza's host tests to read]]
}

-- DSP scripts may not write files: the events go to shared memory, which the session script reads.
local MAX_EVENTS = 8192

function dsp_ioconfig ()
	return { { midi_in = 1, midi_out = 1, audio_in = -1, audio_out = -1 } }
end

function dsp_init (rate)
	-- int 0: events kept; from int 1, four ints an event: session sample, status, data 1, data 2.
	self:shmem ():allocate (1 + 4 * MAX_EVENTS)
	self:shmem ():atomic_set_int (0, 0)
end

function dsp_configure (ins, outs)
	n_out = outs
end

function dsp_runmap (bufs, in_map, out_map, n_samples, offset)
	ARDOUR.DSP.process_map (bufs, n_out, in_map, out_map, n_samples, offset)
	local ib = in_map:get (ARDOUR.DataType ("midi"), 0)
	if ib == ARDOUR.ChanMapping.Invalid then return end
	local shm = self:shmem ()
	local count = shm:atomic_get_int (0)
	local store = shm:to_int (1):array ()
	local pos = Session:transport_sample ()
	for _, e in pairs (bufs:get_midi (ib):table ()) do
		if count < MAX_EVENTS and e:size () == 3 then
			local d = e:buffer ():array ()
			store[4 * count + 1] = pos + e:time ()
			store[4 * count + 2] = d[1]
			store[4 * count + 3] = d[2]
			store[4 * count + 4] = d[3]
			count = count + 1
		end
	end
	shm:atomic_set_int (0, count)
end
