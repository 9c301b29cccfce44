"""Cadenza in minihost (PyPI), a headless JUCE VST3 host, for plugin/tests/hosts/minihost.rs.

This script only plays the host; the Rust test makes the assertions. It reads a
job (JSON, the first argument): the bundle, the tempo, a phrase in session
samples, settings as parameter texts, the sample to press Generate at. It plays
the phrase block by block with the transport moving, presses Generate as a
parameter change inside a block (as automation would), paces the blocks in real
time until the plugin answers, then plays on. It writes (JSON, the second
argument) every MIDI event Cadenza sent with its session sample, the sample of
the block that pressed, and the plugin's saved component state.
"""

import json
import sys
import time

import minihost
from minihost._core import vst3_state_split

# process_midi / process_auto return at most this many events a call.
MIDI_OUT_CAPACITY = 256


def main(job_path, out_path):
    with open(job_path) as f:
        job = json.load(f)
    rate, block, tempo = job["sample_rate"], job["block"], job["tempo_bpm"]
    samples_per_beat = rate * 60.0 / tempo
    plugin = minihost.Plugin(job["bundle"], sample_rate=rate, max_block_size=block, in_channels=0, out_channels=2)
    assert plugin.accepts_midi and plugin.produces_midi, "Cadenza takes and sends MIDI"
    index = {plugin.get_param_info(i)["name"]: i for i in range(plugin.num_params)}
    for name, text in job["settings"].items():
        plugin.set_param(index[name], plugin.param_from_text(index[name], text))
        shown = plugin.param_to_text(index[name], plugin.get_param(index[name]))
        assert shown == text, f"{name}: asked {text!r}, shows {shown!r}"

    edges = []
    for on, off, key, velocity in job["phrase"]:
        edges.append((on, 0x90, key, velocity))
        edges.append((off, 0x80, key, 0))
    silence_in = minihost.AudioBuffer(0, block)
    audio_out = minihost.AudioBuffer(2, block)
    state = {"pos": 0, "events": []}

    def play_block(param_changes=()):
        pos = state["pos"]
        plugin.set_transport(
            bpm=tempo, time_sig_num=4, time_sig_denom=4,
            position_samples=pos, position_beats=pos / samples_per_beat, is_playing=True)
        midi_in = [(t - pos, status, key, vel) for (t, status, key, vel) in edges if pos <= t < pos + block]
        out = plugin.process_auto(silence_in, audio_out, midi_in, list(param_changes))
        assert len(out) < MIDI_OUT_CAPACITY, f"{len(out)} events in one block: some may be lost"
        state["events"].extend((pos + offset, status, d1, d2) for (offset, status, d1, d2) in out)
        state["pos"] = pos + block

    def first_note_on():
        return next((e[0] for e in state["events"] if e[1] & 0xF0 == 0x90 and e[3] > 0), None)

    while state["pos"] + block <= job["press_sample"]:
        play_block()
    pressed_at = state["pos"]
    generate = index["Generate"]
    play_block([(0, generate, 1.0)])
    play_block([(0, generate, 0.0)])

    # The generation runs on the plugin's own threads, in wall-clock time.
    started = time.monotonic()
    while first_note_on() is None:
        if time.monotonic() - started > job["timeout_s"]:
            raise SystemExit(f"no note from Cadenza {job['timeout_s']} s after the press")
        play_block()
        time.sleep(block / rate)
    end = first_note_on() + job["beats_after_first_note"] * samples_per_beat
    while state["pos"] < end:
        play_block()

    component, _controller = vst3_state_split(plugin.get_state())
    result = {
        "events": state["events"],
        "pressed_at": pressed_at,
        "dropped": plugin.midi_out_dropped,
        "state": component.decode("utf-8"),
    }
    plugin.close()
    with open(out_path, "w") as f:
        json.dump(result, f)
    print(f"minihost {minihost.__version__}: {tempo} BPM, {len(state['events'])} events, "
          f"pressed at sample {pressed_at}, {time.monotonic() - started:.1f} s after the press")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
