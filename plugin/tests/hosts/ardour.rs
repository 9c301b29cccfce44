//! Cadenza in a real DAW session (issue 11): Debian's Ardour 7 runs headless
//! (`ardour7-lua`, the "None (Dummy)" backend, in real time) with a MIDI track
//! whose plugins are a Lua phrase source, Cadenza (the VST3 bundle) and a Lua
//! recorder. One process creates the session, plays the phrase, presses
//! Generate from an automation lane with MIDI thru off, hears the variation and
//! saves; a second process loads the session, rolls and hears it again.
//!
//! Ardour trusts its VST3 scan cache only when the plugin is strictly older
//! than the cache file (whole seconds), so the test ages the copied plugin
//! before it runs the scanner with the session's own folders. Closing a session
//! and loading one in the same process crashes Ardour 7.3, hence two processes.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use crate::support;
use crate::support::musician::{BARS, BAR_BEATS, CHOICE, PRESS_BEAT, SEED, VARIATIONS};

/// The headless session tool of Debian's `ardour` package.
const ARDOUR_LUA: &str = "/usr/bin/ardour7-lua";
/// Where that package puts the VST3 scanner and the libraries it needs.
const ARDOUR_LIB: &str = "/usr/lib/ardour7";
const SAMPLE_RATE: u32 = 48_000;
const TEMPO_BPM: f64 = 100.0;
const SAMPLES_PER_BEAT: f64 = SAMPLE_RATE as f64 * 60.0 / TEMPO_BPM;
/// Longest wait for the first note of a session, in seconds.
const NOTE_TIMEOUT_S: u32 = 60;
/// Longest a session script may run, with Ardour's start and stop.
const PROCESS_TIMEOUT: Duration = Duration::from_secs(180);

const PHRASE_DSP: &str = include_str!("ardour/phrase.lua");
const RECORDER_DSP: &str = include_str!("ardour/recorder.lua");
const COMMON: &str = include_str!("ardour/common.lua");
const CREATE: &str = include_str!("ardour/create.lua");
const RELOAD: &str = include_str!("ardour/reload.lua");

/// The folders an Ardour process sees: its configuration (with the Lua DSP scripts), its scan
/// cache and the plugin path, all inside the test's temporary folder.
struct ArdourHome {
    root: PathBuf,
    plugins: PathBuf,
}

impl ArdourHome {
    fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(program);
        cmd.env("HOME", &self.root)
            .env("XDG_CONFIG_HOME", self.root.join("config"))
            .env("XDG_CACHE_HOME", self.root.join("cache"))
            .env("XDG_DATA_HOME", self.root.join("data"))
            .env("VST3_PATH", &self.plugins)
            // Ardour's own libraries, as a user runs it (the test's path leads to libtorch).
            .env_remove("LD_LIBRARY_PATH");
        cmd
    }

    /// Run `script` in `ardour7-lua`; its output, or a panic with it when the process fails.
    fn run_lua(&self, name: &str, script: &str) -> String {
        let path = self.root.join(format!("{name}.lua"));
        std::fs::write(&path, script).expect("session script");
        let log_path = self.root.join(format!("{name}.log"));
        let log = std::fs::File::create(&log_path).expect("log");
        let started = Instant::now();
        let mut child = self
            .command(ARDOUR_LUA)
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start ardour7-lua");
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait for ardour7-lua") {
                break Some(status);
            }
            if started.elapsed() > PROCESS_TIMEOUT {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let mut text = String::new();
        std::fs::File::open(&log_path).expect("log").read_to_string(&mut text).expect("read log");
        let text = quiet(&text);
        eprintln!("ardour7-lua {name}: {:.1} s\n{text}", started.elapsed().as_secs_f64());
        match status {
            Some(s) if s.success() && text.contains("session saved") => text,
            Some(s) if s.success() => panic!("ardour7-lua {name} ended without saving:\n{text}"),
            Some(s) => panic!("ardour7-lua {name} failed ({s}):\n{text}"),
            None => panic!("ardour7-lua {name} ran past {PROCESS_TIMEOUT:?}:\n{text}"),
        }
    }
}

/// Ardour 7.3 hands an automated parameter's points to the plugin at the block's end
/// (sample offset == block length), and the debug build warns of each one as it clamps it
/// into the block; one line stands for them all.
fn quiet(log: &str) -> String {
    let noisy = "Input event is out of bounds";
    let count = log.lines().filter(|l| l.contains(noisy)).count();
    let mut out: Vec<&str> = log.lines().filter(|l| !l.contains(noisy)).collect();
    let summary = format!("({count} debug warnings: '{noisy}, will be clamped', one a block while the lane plays)");
    if count > 0 {
        out.push(&summary);
    }
    out.join("\n")
}

/// A Lua table of the test's settings, put before the session scripts.
fn settings_table(dir: &Path, events: &Path, beats_after_first_note: f64) -> String {
    let press = (PRESS_BEAT * SAMPLES_PER_BEAT).round();
    let release = ((PRESS_BEAT + 1.0) * SAMPLES_PER_BEAT).round();
    format!(
        "T = {{ dir = {dir:?}, name = \"cadenza\", track = \"Cadenza\", events = {events:?},\n\
         sample_rate = {SAMPLE_RATE}, tempo_bpm = {TEMPO_BPM}, press_sample = {press}, release_sample = {release},\n\
         beats_after_first_note = {beats_after_first_note}, timeout_s = {NOTE_TIMEOUT_S},\n\
         settings = {{ [\"Bars\"] = {BARS}, [\"Variations\"] = {VARIATIONS}, [\"Variation\"] = {CHOICE},\n\
         [\"Seed\"] = {SEED}, [\"MIDI thru\"] = 0, [\"Loop\"] = 1, [\"Auto-play\"] = 1 }} }}\n"
    )
}

/// The recorder's events file: (block size, events as (session sample, status, data 1, data 2)).
fn read_events(path: &Path) -> (u64, Vec<support::HostMidi>) {
    let text = std::fs::read_to_string(path).expect("events file");
    let mut lines = text.lines();
    let block = lines.next().and_then(|l| l.strip_prefix("block ")).and_then(|b| b.parse().ok()).expect("block line");
    let events: Vec<support::HostMidi> = lines
        .map(|l| {
            let f: Vec<u64> = l.split(' ').map(|x| x.parse().expect("number")).collect();
            (f[0], f[1] as u8, f[2] as u8, f[3] as u8)
        })
        .collect();
    assert!(events.len() < 8192, "the recorder was full");
    (block, events)
}

/// Cadenza's processor in a saved `.ardour` file: (component state, its parameters as Ardour
/// keeps them: `<Port id= value=>`).
fn saved_cadenza(session_file: &Path) -> (Vec<u8>, Vec<(String, String)>) {
    let xml = std::fs::read_to_string(session_file).expect("session file");
    let start =
        xml.find("type=\"vst3\" unique-id=\"436164656E7A614D696469436F6E7431\"").expect("Cadenza in the session");
    let processor = &xml[start..start + xml[start..].find("</Processor>").expect("processor end")];
    let between = |s: &str, a: &str, b: &str| -> Option<(usize, usize)> {
        let i = s.find(a)? + a.len();
        Some((i, i + s[i..].find(b)?))
    };
    let (a, b) = between(processor, "<chunk>", "</chunk>").expect("Cadenza's state chunk");
    let ports = processor
        .match_indices("<Port id=\"")
        .map(|(i, _)| {
            let rest = &processor[i + 10..];
            let id = rest.split('"').next().expect("id").to_string();
            let value = rest.split("value=\"").nth(1).and_then(|v| v.split('"').next()).expect("value").to_string();
            (id, value)
        })
        .collect();
    (component_state(&base64_decode(processor[a..b].trim())), ports)
}

/// The component ('Comp') chunk of a `.vstpreset` image, the form Ardour saves VST3 state in:
/// "VST3", version, class id (32 characters), offset of the chunk list; the list is "List",
/// a count, then (id, offset, size) entries.
fn component_state(preset: &[u8]) -> Vec<u8> {
    assert_eq!(&preset[..4], b"VST3", "a VST3 preset");
    let i64_at = |i: usize| i64::from_le_bytes(preset[i..i + 8].try_into().expect("8 bytes")) as usize;
    let list = i64_at(40);
    assert_eq!(&preset[list..list + 4], b"List", "the preset's chunk list");
    let count = i32::from_le_bytes(preset[list + 4..list + 8].try_into().expect("4 bytes")) as usize;
    (0..count)
        .map(|k| list + 8 + 20 * k)
        .find(|&e| &preset[e..e + 4] == b"Comp")
        .map(|e| preset[i64_at(e + 4)..i64_at(e + 4) + i64_at(e + 12)].to_vec())
        .expect("a component chunk")
}

fn base64_decode(text: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in text.bytes().filter(|c| !c.is_ascii_whitespace() && *c != b'=') {
        let v = ALPHABET.iter().position(|&a| a == c).expect("base64") as u32;
        acc = acc << 6 | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}

/// The phrase as the Lua source's rows: {note-on sample, note-off sample, key, velocity}.
fn phrase_rows(phrase: &[[u64; 4]]) -> String {
    let rows: Vec<String> =
        phrase.iter().map(|[on, off, key, vel]| format!("\t{{ {on}, {off}, {key}, {vel} }},")).collect();
    rows.join("\n")
}

#[test]
fn ardour_session_generates_on_the_bar_and_plays_it_again_after_reload() {
    if !Path::new(ARDOUR_LUA).is_file() {
        eprintln!("skipped: {ARDOUR_LUA} is missing; `cargo xtask setup` installs it (Debian package ardour)");
        return;
    }
    let (style, model) = support::test_model();
    let model_bytes = std::fs::read(&model).expect("model");
    let tmp = tempfile::tempdir().expect("tmp");
    let home = ArdourHome { root: tmp.path().join("home"), plugins: tmp.path().join("vst3") };
    let scripts = home.root.join("config/ardour7/scripts");
    std::fs::create_dir_all(&scripts).expect("scripts dir");
    std::fs::create_dir_all(&home.plugins).expect("plugin dir");
    let bundle = support::vst3_bundle(&home.plugins, &[(style.as_str(), &model_bytes)]);

    // Registration: the plugin older than the cache the scanner writes now.
    let so = bundle.join("Contents/x86_64-linux/Cadenza.so");
    std::fs::File::options()
        .write(true)
        .open(&so)
        .and_then(|f| f.set_modified(SystemTime::now() - Duration::from_secs(120)))
        .expect("age the plugin");
    let scan = home
        .command(&format!("{ARDOUR_LIB}/ardour-vst3-scanner"))
        .arg("-f")
        .arg(&bundle)
        .env("LD_LIBRARY_PATH", ARDOUR_LIB)
        .output()
        .expect("run the scanner");
    let scan_log = format!("{}{}", String::from_utf8_lossy(&scan.stdout), String::from_utf8_lossy(&scan.stderr));
    assert!(scan.status.success() && scan_log.contains("Found Plugin: Cadenza"), "the scan failed:\n{scan_log}");

    let phrase = support::musician::phrase_samples(TEMPO_BPM, SAMPLE_RATE);
    std::fs::write(scripts.join("cadenza_test_phrase.lua"), PHRASE_DSP.replace("{{PHRASE}}", &phrase_rows(&phrase)))
        .expect("phrase");
    std::fs::write(scripts.join("cadenza_test_recorder.lua"), RECORDER_DSP).expect("recorder");

    // Session one: a variation and a half, to hear the loop start again.
    let length_beats = f64::from(BARS) * BAR_BEATS;
    let dir = tmp.path().join("session");
    let session_file = dir.join("cadenza.ardour");
    let events1 = home.root.join("created.events");
    let t = settings_table(&dir, &events1, length_beats + 0.5);
    home.run_lua("create", &format!("{t}{COMMON}{CREATE}"));
    let (block, events) = read_events(&events1);
    let block_samples = block as f64;
    let (state, ports) = saved_cadenza(&session_file);
    let state_json: serde_json::Value = serde_json::from_slice(&state).expect("state JSON");
    let session = support::session_of_vst3_state(&state);
    let generation = &session["generation"];

    // What the press made, as the project keeps it.
    assert_eq!(generation["bars"], BARS, "{generation}");
    assert_eq!(generation["tempo_bpm"], TEMPO_BPM, "generated at the session's tempo");
    assert_eq!(generation["variations"].as_array().map(Vec::len), Some(VARIATIONS as usize));
    assert_eq!(generation["settings"]["sampling"]["seed"], SEED);
    assert_eq!(state_json["params"]["choice"]["i32"], CHOICE);
    assert_eq!(state_json["params"]["thru"]["bool"], false);
    assert_eq!(state_json["params"]["loop"]["bool"], true);
    // The primer is the phrase the track played, where it played it (within a block).
    let primer = generation["primer"]["notes"].as_array().expect("primer");
    assert_eq!(primer.len(), phrase.len(), "the whole phrase was captured: {primer:?}");
    for (n, [on, _, key, _]) in primer.iter().zip(&phrase) {
        let at = n["start_beats"].as_f64().expect("start_beats") * SAMPLES_PER_BEAT;
        assert!(n["pitch"] == *key && (at - *on as f64).abs() <= block_samples, "primer note {n} for {key} at {on}");
    }

    // MIDI thru off: only generated notes came out, all after the press.
    let press_sample = PRESS_BEAT * SAMPLES_PER_BEAT;
    let ons = support::note_ons(&events);
    assert!(ons.iter().all(|n| n.0 as f64 >= press_sample - block_samples), "a note before the press: {ons:?}");
    let variation = support::variation_notes(&session, CHOICE as usize);
    assert!(variation.iter().all(|n| n.0 < length_beats), "notes within the {BARS} bars asked");
    let (bar, off) =
        support::played_from_bar(&ons, &variation, SAMPLES_PER_BEAT, BAR_BEATS, length_beats, block_samples);
    let elapsed_ms = generation["elapsed_ms"].as_u64().expect("elapsed_ms");
    // The chosen variation plays as soon as it alone is made, before the other.
    let first_ms = generation["first_ms"].as_u64().expect("first_ms");
    assert!(first_ms <= elapsed_ms, "chosen after {first_ms} ms, all after {elapsed_ms} ms");
    support::assert_next_bar_line(bar, PRESS_BEAT, first_ms, TEMPO_BPM, BAR_BEATS);
    // Loop on: the chosen variation starts again right after its bars.
    let again = ((bar + length_beats + variation[0].0) * SAMPLES_PER_BEAT, variation[0].1);
    assert!(
        ons.iter().any(|n| n.1 == again.1 && (n.0 as f64 - again.0).abs() <= block_samples),
        "the loop starts again at beat {}",
        bar + length_beats
    );
    let relative = |ons: &[(u64, u8)], bar: f64| -> Vec<(f64, u8)> {
        ons.iter()
            .map(|n| (n.0 as f64 - bar * SAMPLES_PER_BEAT, n.1))
            .filter(|n| n.0 > -block_samples && n.0 < length_beats * SAMPLES_PER_BEAT - block_samples)
            .collect()
    };
    let first_pass = relative(&ons, bar);
    eprintln!(
        "Ardour: pressed at beat {PRESS_BEAT}, chosen ready in {first_ms} ms (all {elapsed_ms} ms), variation {CHOICE} from beat {bar} \
         ({} notes, each within {off:.1} samples of its place; block {block})",
        first_pass.len()
    );

    // Session two, in a new process: load, roll, hear, save.
    let events2 = home.root.join("reloaded.events");
    let t = settings_table(&dir, &events2, length_beats + 0.5);
    home.run_lua("reload", &format!("{t}{COMMON}{RELOAD}"));
    let (_, events) = read_events(&events2);
    let ons = support::note_ons(&events);
    let (bar2, off2) =
        support::played_from_bar(&ons, &variation, SAMPLES_PER_BEAT, BAR_BEATS, length_beats, block_samples);
    assert_eq!(bar2, 0.0, "with Loop on, the restored variation plays from the bar line the transport rolled from");
    let second_pass = relative(&ons, bar2);
    assert_eq!(second_pass.len(), first_pass.len(), "the same variation again: {first_pass:?} then {second_pass:?}");
    for (a, b) in first_pass.iter().zip(&second_pass) {
        assert!(
            a.1 == b.1 && (a.0 - b.0).abs() <= block_samples,
            "the same notes at the same places: {a:?} then {b:?}"
        );
    }
    eprintln!("Ardour, reloaded: variation {CHOICE} from beat {bar2}, each note within {off2:.1} samples of its place");

    // Primer, variations, choice and settings came back: the state saved again is the same, to the byte.
    let (state2, ports2) = saved_cadenza(&session_file);
    let session2 = support::session_of_vst3_state(&state2);
    assert_eq!(session2, session, "the session state came back");
    let json2: serde_json::Value = serde_json::from_slice(&state2).expect("state JSON");
    assert_eq!(json2["params"], state_json["params"], "the parameters came back");
    assert!(state2 == state, "load -> play -> save gives the same bytes ({} then {})", state.len(), state2.len());
    assert_eq!(ports2, ports, "Ardour's copy of the parameters came back");
}
