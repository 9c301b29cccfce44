ardour {
	["type"]    = "dsp",
	name        = "Cadenza Test Phrase",
	category    = "Utility",
	license     = "MIT",
	author      = "Cadenza",
	description = [[Plays the test's phrase at fixed places on the session timeline while the transport rolls (Cadenza's host tests)]]
}

-- {note-on sample, note-off sample, key, velocity}; the test writes the rows.
local phrase = {
{{PHRASE}}
}

function dsp_ioconfig ()
	return { { midi_in = 1, midi_out = 1, audio_in = -1, audio_out = -1 } }
end

function dsp_configure (ins, outs)
	n_out = outs
end

function dsp_runmap (bufs, in_map, out_map, n_samples, offset)
	ARDOUR.DSP.process_map (bufs, n_out, in_map, out_map, n_samples, offset)
	local ob = out_map:get (ARDOUR.DataType ("midi"), 0)
	if ob == ARDOUR.ChanMapping.Invalid or not Session:transport_rolling () then return end
	local mb = bufs:get_midi (ob)
	-- The processors run before the transport position moves on: this is the cycle's first sample.
	local pos = Session:transport_sample () + offset
	local bytes = C.ByteVector ()
	for _, n in ipairs (phrase) do
		for edge = 1, 2 do
			local at = n[edge]
			if at >= pos and at < pos + n_samples then
				bytes:clear ()
				if edge == 1 then bytes:add ({ 0x90, n[3], n[4] }) else bytes:add ({ 0x80, n[3], 0 }) end
				-- Ardour 7.3's MidiBuffer:push_back takes the event type (1: MIDI) before the size.
				mb:push_back (at - pos + offset, 1, bytes:size (), bytes:to_array ())
			end
		end
	end
end
