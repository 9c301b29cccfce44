//! `cargo xtask bench plugin` runs this against the release bundle: the time
//! one process() call of 512 samples takes while idle and while playing (with
//! and without the preview piano), measured by the host around the call, and
//! the wall time from pressing Generate (an automation event, transport
//! stopped so the result plays at once) to the first generated note-on for
//! 8 bars, and to the last of several variations (the chosen one plays from
//! its first bar on while the rest of it and the others are made). Usage: `bench --clap target/bundled/Cadenza.clap [--blocks N] [--style NAME] [--lean X]`.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use cadenza_test_support::clap_host::{param_hash, ClapLibrary, InEvent, Instance, Transport};
use cadenza_test_support::hosts::{edit_state, session_of_state};

const SAMPLE_RATE: f64 = 48_000.0;
const FRAMES: u32 = 512;
const BLOCK_S: f64 = FRAMES as f64 / SAMPLE_RATE;

fn stats(us: &[f64]) -> String {
    let mut v = us.to_vec();
    v.sort_by(f64::total_cmp);
    let pct = |p: f64| v[((v.len() - 1) as f64 * p).round() as usize];
    let mean = v.iter().sum::<f64>() / v.len() as f64;
    format!(
        "median {:7.1} us  mean {:7.1} us  p99 {:7.1} us  max {:8.1} us  ({:.2}% of the {:.2} ms block, {} blocks)",
        pct(0.5),
        mean,
        pct(0.99),
        pct(1.0),
        100.0 * pct(0.5) / (BLOCK_S * 1e6),
        BLOCK_S * 1e3,
        v.len()
    )
}

fn stopped(beats: f64) -> Transport {
    Transport { playing: false, tempo_bpm: 120.0, beats, tsig: (4, 4) }
}

/// The first bars of Twinkle as note events, in real time as a musician plays them (8 s): the
/// plugin loads the style's model while it listens, as it does in a DAW.
fn play_phrase(inst: &mut Instance) {
    let beats_per_block = BLOCK_S * 2.0;
    let notes: Vec<(f64, u8)> = [60u8, 60, 67, 67, 69, 69, 67, 0, 65, 65, 64, 64, 62, 62, 60]
        .iter()
        .enumerate()
        .filter(|(_, k)| **k > 0)
        .map(|(i, k)| (i as f64, *k))
        .collect();
    let blocks = (16.0 / beats_per_block) as usize;
    inst.process_blocks(
        blocks,
        FRAMES,
        |b| {
            let (s, e) = (b as f64 * beats_per_block, (b + 1) as f64 * beats_per_block);
            let mut ev = Vec::new();
            for &(t, k) in &notes {
                for (at, on) in [(t, true), (t + 0.8, false)] {
                    if at >= s && at < e {
                        let time = ((at - s) / beats_per_block * f64::from(FRAMES)) as u32;
                        ev.push(InEvent::Note { time: time.min(FRAMES - 1), key: i16::from(k), velocity: 0.7, on });
                    }
                }
            }
            ev.sort_by_key(|e| match e {
                InEvent::Note { time, .. } | InEvent::Param { time, .. } => *time,
            });
            ev
        },
        |_| stopped(0.0),
        real_time(),
    );
}

/// A block callback that paces blocks in real time, as a host's audio thread is.
fn real_time() -> impl FnMut(usize, &[cadenza_test_support::clap_host::OutNote]) -> bool {
    let mut next_block = Instant::now();
    move |_, _| {
        next_block += Duration::from_secs_f64(BLOCK_S);
        if let Some(wait) = next_block.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        true
    }
}

/// Choose the style `name` as a project load would: the saved session with its style replaced.
fn choose_style(inst: &Instance, name: &str) {
    let state = inst.save_state();
    let mut session = session_of_state(&state);
    session["style"] = name.into();
    let edited = edit_state(&state, |json| json["fields"]["session"] = session.to_string().into());
    assert!(inst.load_state(&edited), "the plugin refused the style {name}");
}

/// The generation in the session the plugin saved.
fn generation(inst: &Instance) -> serde_json::Value {
    session_of_state(&inst.save_state())["generation"].clone()
}

/// One press: press -> the chosen variation's start ready to play and press -> all variations
/// ready, as the plugin measured them; press -> first note out as the host heard it, and how many
/// beats into the variation that first note is.
struct Press {
    seed: u32,
    /// Notes in each variation: a sparse one is made faster.
    notes: Vec<usize>,
    chosen_ms: u64,
    /// None when the other variations were not all made within [`ALL_MADE_WAIT`].
    all_ms: Option<u64>,
    first_note: Duration,
    first_note_beats: f64,
}

/// How long a press waits, after the chosen variation plays, for the other variations.
const ALL_MADE_WAIT: Duration = Duration::from_secs(30);

fn press(inst: &mut Instance, variations: i32, seed: u32) -> Press {
    let first_note = time_to_first_note(inst, variations, seed);
    let mut g = generation(inst);
    let first_note_beats = g["variations"][0]["notes"][0]["start_beats"].as_f64().unwrap_or(0.0);
    // The rest is still being made while the chosen one's start plays: go on as a host would until
    // the plugin has every variation, or give up after ALL_MADE_WAIT and say so.
    // Until then the others' places hold empty clips and the generation's time is the chosen one's.
    let all_made = |g: &serde_json::Value| {
        g["elapsed_ms"] != g["first_ms"]
            || g["variations"].as_array().is_some_and(|v| {
                v.len() == variations as usize && v.iter().all(|v| v["notes"].as_array().is_some_and(|n| !n.is_empty()))
            })
    };
    let started = Instant::now();
    while !all_made(&g) && started.elapsed() < ALL_MADE_WAIT {
        inst.process_blocks(20, FRAMES, |_| Vec::new(), |_| stopped(0.0), real_time());
        g = generation(inst);
    }
    let elapsed_ms = g["elapsed_ms"].as_u64().unwrap_or(0);
    let all_ms = all_made(&g).then_some(elapsed_ms);
    let notes = g["variations"]
        .as_array()
        .map_or(Vec::new(), |v| v.iter().map(|v| v["notes"].as_array().map_or(0, Vec::len)).collect());
    Press { seed, notes, chosen_ms: g["first_ms"].as_u64().unwrap_or(elapsed_ms), all_ms, first_note, first_note_beats }
}

/// Press Generate and wait, processing blocks in real time as a host would, for the first generated note.
fn time_to_first_note(inst: &mut Instance, variations: i32, seed: u32) -> Duration {
    let set = |id: &str, v: f64| InEvent::Param { time: 0, id: param_hash(id), value: v };
    let start = Instant::now();
    let mut first = None;
    let mut next_block = Instant::now();
    inst.process_blocks(
        usize::MAX,
        FRAMES,
        |b| match b {
            0 => {
                vec![
                    set("bars", 8.0 - 1.0),
                    set("vars", f64::from(variations - 1)),
                    set("seed", f64::from(seed)),
                    set("thru", 0.0),
                    set("gen", 1.0),
                ]
            }
            1 => vec![set("gen", 0.0)],
            _ => Vec::new(),
        },
        |_| stopped(0.0),
        |_, notes| {
            if notes.iter().any(|n| n.velocity > 0.0) {
                first = Some(start.elapsed());
                return false;
            }
            next_block += Duration::from_secs_f64(BLOCK_S);
            if let Some(wait) = next_block.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            start.elapsed() < Duration::from_secs(600)
        },
    );
    first.expect("no generated note within 10 minutes")
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
    let clap = PathBuf::from(arg("--clap").unwrap_or_else(|| "target/bundled/Cadenza.clap".into()));
    let blocks: usize = arg("--blocks").and_then(|b| b.parse().ok()).unwrap_or(4000);

    let lib = ClapLibrary::load(&clap).unwrap_or_else(|e| panic!("{e}"));
    let mut inst = lib.instantiate("org.cadenza-music.cadenza").expect("instance");
    inst.activate(SAMPLE_RATE, FRAMES);
    if let Some(style) = arg("--style") {
        choose_style(&inst, &style);
    }
    if let Some(lean) = arg("--lean").and_then(|v| v.parse::<f32>().ok()) {
        // CLAP carries a continuous parameter's value normalised to 0..1.
        let value = f64::from(lean / cadenza_core::sampling::MAX_CONTRAST);
        let set = InEvent::Param { time: 0, id: param_hash("lean"), value };
        inst.process_blocks(1, FRAMES, |_| vec![set], |_| stopped(0.0), |_, _| true);
    }

    // Idle: transport running, nothing captured, nothing to play.
    inst.process_blocks(
        blocks,
        FRAMES,
        |_| Vec::new(),
        |b| Transport { playing: true, tempo_bpm: 120.0, beats: b as f64 * BLOCK_S * 2.0, tsig: (4, 4) },
        |_, _| true,
    );
    let idle = inst.block_us.clone();

    // One variation, then the plugin's default of four at three seeds: a sparse variation is made
    // sooner than a dense one, so one seed alone can flatter the time.
    let mut presses = Vec::new();
    for (i, (variations, seed)) in [(1, 1), (4, 1), (4, 2), (4, 3)].into_iter().enumerate() {
        if i > 0 {
            // Let the last result play out (8 bars = 32 beats) before the next press, so its notes don't count.
            let blocks = (34.0 / (BLOCK_S * 2.0)) as usize;
            inst.process_blocks(blocks, FRAMES, |_| Vec::new(), |_| stopped(0.0), |_, _| true);
        }
        play_phrase(&mut inst);
        presses.push((variations, press(&mut inst, variations, seed)));
    }
    let g = generation(&inst);

    // Playing: the 8-bar variation loops while notes pass through.
    let loop_on = InEvent::Param { time: 0, id: param_hash("loop"), value: 1.0 };
    let thru_on = InEvent::Param { time: 0, id: param_hash("thru"), value: 1.0 };
    let playing = |inst: &mut Instance, extra: Vec<InEvent>| {
        inst.process_blocks(
            blocks,
            FRAMES,
            |b| {
                let mut ev = if b == 0 { vec![loop_on, thru_on] } else { Vec::new() };
                if b == 0 {
                    ev.extend(extra.iter().copied());
                }
                if b % 50 == 10 {
                    ev.push(InEvent::Note { time: 100, key: 72, velocity: 0.8, on: true });
                }
                if b % 50 == 30 {
                    ev.push(InEvent::Note { time: 100, key: 72, velocity: 0.0, on: false });
                }
                ev
            },
            |_| stopped(0.0),
            |_, _| true,
        )
    };
    let out = playing(&mut inst, Vec::new());
    let played = out.iter().filter(|n| n.velocity > 0.0 && n.key != 72).count();
    let playing_us = inst.block_us.clone();

    // Playing with the preview piano: switch it on, give the soundfont time to load (real time), measure.
    let piano_on = InEvent::Param { time: 0, id: param_hash("piano"), value: 1.0 };
    inst.process_blocks(1, FRAMES, |_| vec![piano_on], |_| stopped(0.0), |_, _| true);
    std::thread::sleep(Duration::from_secs(8));
    playing(&mut inst, Vec::new());
    let piano_us = inst.block_us.clone();

    println!(
        "Cadenza plugin benchmark: {} (48 kHz, 512-sample blocks, host-side wall time per process() call)",
        clap.display()
    );
    println!("model: style {}", g["style"]);
    println!("idle (transport running, nothing to play)      {}", stats(&idle));
    println!("playing (8-bar loop + MIDI thru, {played} notes)  {}", stats(&playing_us));
    println!("playing + preview piano                        {}", stats(&piano_us));
    for (n, p) in &presses {
        println!(
            "Generate -> {n} variation(s) of 8 bars, seed {}, notes {:?}: the chosen one playable from {:5} ms, {} (plugin's measure); first note out {:5.0} ms (host; that note is {:.2} beats into the variation)",
            p.seed,
            p.notes,
            p.chosen_ms,
            p.all_ms.map_or(format!("not all made within {} s", ALL_MADE_WAIT.as_secs()), |ms| format!("all made {ms:5} ms")),
            p.first_note.as_secs_f64() * 1e3,
            p.first_note_beats
        );
    }
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("load average during the run: {}", load.split_whitespace().take(3).collect::<Vec<_>>().join(" "));
}
