//! The standalone Cadenza as a musician without a DAW runs it: JACK's dummy
//! backend, a phrase played into its MIDI input by a JACK client of the
//! test's own, which also hears its MIDI output, the editor in a window on
//! Xvfb. Cadenza runs in call-and-response mode (`--answer`), so after the
//! phrase and a bar of silence it must answer with generated notes; then the
//! editor is photographed from Xvfb's framebuffer and checked for the primer
//! and the continuation drawn in their colours.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cadenza_test_support::{ort_library, repo_root, test_model};
use jack::{Client, ClientOptions, Control, MidiIn, MidiOut, Port, ProcessHandler, ProcessScope, RawMidi};

const SAMPLE_RATE: u32 = 48_000;
/// JACK's period: the server's cycle, in frames (43 ms). JACK's dummy backend runs without
/// realtime priority here, so a client that the kernel runs late misses its cycle, and with it
/// that cycle's MIDI; at 512 frames (11 ms) a loaded machine made the test's own client miss one
/// cycle in ten, at 2,048 none (one core shared with eight busy loops, three runs).
const PERIOD: u32 = 2048;
/// The editor's colours for primer and generated notes (`plugin/src/editor.rs`).
const PRIMER_RGB: [u8; 3] = [0x5f, 0xa8, 0xd3];
const GENERATED_RGB: [u8; 3] = [0xf2, 0xa5, 0x41];
/// The test's JACK clients: one plays the phrase, one hears Cadenza.
const KEYS: &str = "cadenza-test-keys";
const EARS: &str = "cadenza-test-ears";

/// A process we started, killed (by its id) when the test ends.
struct Proc(Child);

impl Drop for Proc {
    /// SIGTERM first: a JACK server killed outright stays in JACK's shared registry, and a few
    /// such ghosts stop any new server from starting ("too many servers already active").
    fn drop(&mut self) {
        let _ = Command::new("kill").arg("-TERM").arg(self.0.id().to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if matches!(self.0.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(name: &'static str, cmd: &mut Command) -> Proc {
    Proc(cmd.spawn().unwrap_or_else(|e| panic!("cannot start {name}: {e}")))
}

fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
}

fn wait_for(what: &str, timeout: Duration, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !ready() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A MIDI event on the JACK server's frame clock, which every client reads alike: an event the
/// test sent and the same event passed through by Cadenza carry the same frame.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Event {
    frame: u32,
    bytes: [u8; 3],
}

impl Event {
    fn note_on(&self) -> bool {
        matches!(self.note(), Some((true, _)))
    }

    /// Note-on or note-off (a note-on at velocity 0 is one), and the key: what pass-through keeps.
    fn note(&self) -> Option<(bool, u8)> {
        match self.bytes[0] & 0xf0 {
            0x90 => Some((self.bytes[2] > 0, self.bytes[1])),
            0x80 => Some((false, self.bytes[1])),
            _ => None,
        }
    }
}

/// The client that plays the phrase: nothing until `go`, then each event at its frame after the
/// first cycle that saw `go`. A late cycle's events go out at the start of the next one, and are
/// reported at the frame they actually went out.
struct Keys {
    port: Port<MidiOut>,
    /// (frames after the start, bytes), in order.
    phrase: Vec<(u32, [u8; 3])>,
    go: Arc<AtomicBool>,
    start: Option<u32>,
    next: usize,
    sent: SyncSender<Event>,
}

impl ProcessHandler for Keys {
    fn process(&mut self, _: &Client, ps: &ProcessScope) -> Control {
        let now = ps.last_frame_time();
        if self.start.is_none() && self.go.load(Ordering::Acquire) {
            self.start = Some(now);
        }
        let Some(start) = self.start else { return Control::Continue };
        let mut writer = self.port.writer(ps);
        while let Some(&(at, bytes)) = self.phrase.get(self.next) {
            let due = start + at;
            if due >= now + ps.n_frames() {
                break;
            }
            let offset = due.saturating_sub(now);
            if writer.write(&RawMidi { time: offset, bytes: &bytes }).is_err() {
                break;
            }
            let _ = self.sent.try_send(Event { frame: now + offset, bytes });
            self.next += 1;
        }
        Control::Continue
    }
}

/// The client that hears Cadenza's output, and notes each span of frames whose cycle it missed.
struct Ears {
    port: Port<MidiIn>,
    heard: SyncSender<Event>,
    expected: Option<u32>,
    missed: SyncSender<(u32, u32)>,
}

impl ProcessHandler for Ears {
    fn process(&mut self, _: &Client, ps: &ProcessScope) -> Control {
        let now = ps.last_frame_time();
        if let Some(expected) = self.expected.filter(|&e| e != now) {
            let _ = self.missed.try_send((expected, now));
        }
        self.expected = Some(now + ps.n_frames());
        for m in self.port.iter(ps) {
            let mut bytes = [0; 3];
            let n = m.bytes.len().min(3);
            bytes[..n].copy_from_slice(&m.bytes[..n]);
            let _ = self.heard.try_send(Event { frame: now + m.time, bytes });
        }
        Control::Continue
    }
}

/// Each sent note event's pass-through among the heard events (same kind and key within one
/// period: Cadenza runs between the two clients in one cycle), or `None`.
fn echoes(sent: &[Event], heard: &[Event]) -> Vec<Option<usize>> {
    let mut used = vec![false; heard.len()];
    sent.iter()
        .map(|s| {
            let i = (0..heard.len())
                .find(|&i| !used[i] && heard[i].note() == s.note() && heard[i].frame.abs_diff(s.frame) <= PERIOD)?;
            used[i] = true;
            Some(i)
        })
        .collect()
}

/// An X window dump (Xvfb `-fbdir`) as RGB rows.
struct Image {
    width: usize,
    height: usize,
    rgb: Vec<u8>,
}

fn read_xwd(bytes: &[u8]) -> Image {
    let field = |i: usize, le: bool| {
        let b: [u8; 4] = bytes[i * 4..i * 4 + 4].try_into().expect("4 bytes");
        if le {
            u32::from_le_bytes(b)
        } else {
            u32::from_be_bytes(b)
        }
    };
    // The header's byte order is the writer's; the version field (7) tells which.
    let le = field(1, true) == 7;
    let header_size = field(0, le) as usize;
    let (width, height) = (field(4, le) as usize, field(5, le) as usize);
    let pixel_le = field(7, le) == 0;
    let bpp = field(11, le) as usize;
    let bytes_per_line = field(12, le) as usize;
    let masks = [field(14, le), field(15, le), field(16, le)];
    let ncolors = field(19, le) as usize;
    assert_eq!(bpp, 32, "Xvfb at depth 24 stores 32 bits per pixel");
    let data = &bytes[header_size + ncolors * 12..];
    let mut rgb = Vec::with_capacity(width * height * 3);
    for y in 0..height {
        for x in 0..width {
            let o = y * bytes_per_line + x * 4;
            let b: [u8; 4] = data[o..o + 4].try_into().expect("pixel");
            let v = if pixel_le { u32::from_le_bytes(b) } else { u32::from_be_bytes(b) };
            for m in masks {
                rgb.push(((v & m) >> m.trailing_zeros()) as u8);
            }
        }
    }
    Image { width, height, rgb }
}

fn write_png(img: &Image, path: &Path) {
    let file = std::fs::File::create(path).expect("png file");
    let mut enc = png::Encoder::new(std::io::BufWriter::new(file), img.width as u32, img.height as u32);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    enc.write_header().expect("png header").write_image_data(&img.rgb).expect("png data");
}

#[test]
fn standalone_answers_a_phrase_over_jack_and_the_editor_shows_it() {
    // CI shows the end of a failing test's output: the failure's own report must end it, not a
    // backtrace.
    std::panic::set_hook(Box::new(|info| eprintln!("{info}")));
    for tool in ["Xvfb", "jackd"] {
        assert!(on_path(tool), "{tool} is missing: run `cargo xtask setup` (Debian packages xvfb, jackd2)");
    }
    let tmp = tempfile::tempdir().expect("tmp");
    let (style, model) = test_model();
    let resources = tmp.path().join("Cadenza.clap.resources");
    std::fs::create_dir_all(resources.join("lib")).expect("lib");
    std::fs::create_dir_all(resources.join("models")).expect("models");
    std::os::unix::fs::symlink(ort_library(), resources.join("lib/libonnxruntime.so.1.31.1")).expect("ort");
    std::fs::copy(&model, resources.join("models").join(format!("{style}.onnx"))).expect("model");
    let read = |name: &str| std::fs::read_to_string(tmp.path().join(name)).unwrap_or_default();

    // A private X server and JACK server.
    let display = (40..99)
        .find(|n| {
            !Path::new(&format!("/tmp/.X11-unix/X{n}")).exists() && !Path::new(&format!("/tmp/.X{n}-lock")).exists()
        })
        .expect("a free display");
    let fb = tmp.path().join("fb");
    std::fs::create_dir_all(&fb).expect("fb");
    let _xvfb = spawn(
        "Xvfb",
        Command::new("Xvfb")
            .arg(format!(":{display}"))
            .args(["-noreset", "-nolisten", "tcp", "-screen", "0", "1040x700x24", "-fbdir"])
            .arg(&fb)
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    wait_for("Xvfb", Duration::from_secs(15), || Path::new(&format!("/tmp/.X11-unix/X{display}")).exists());

    let server = format!("cadenza-test-{}", std::process::id());
    // The test's own clients find the server as the standalone does, by this variable; nothing
    // else in this one-test binary reads the environment meanwhile.
    std::env::set_var("JACK_DEFAULT_SERVER", &server);
    let mut cmd = Command::new("jackd");
    let jackd_log = std::fs::File::create(tmp.path().join("jackd.log")).expect("jackd log");
    cmd.args(["--no-realtime", "-n", &server, "-d", "dummy", "-r", &SAMPLE_RATE.to_string(), "-p"])
        .arg(PERIOD.to_string())
        .env("JACK_NO_AUDIO_RESERVATION", "1")
        .stdout(jackd_log.try_clone().expect("jackd log"))
        .stderr(jackd_log);
    let mut jackd = spawn("jackd", &mut cmd);
    // A jackd that exits at once says why in its log (JACK's shared registry full of servers that
    // were killed outright: "too many servers already active").
    let open = |name: &str| {
        Client::new(name, ClientOptions::NO_START_SERVER | ClientOptions::USE_EXACT_NAME).map(|(client, _)| client)
    };
    let mut keys_client = None;
    wait_for("jackd", Duration::from_secs(15), || {
        if let Ok(Some(status)) = jackd.0.try_wait() {
            panic!("jackd exited ({status}); its log:\n{}", read("jackd.log"));
        }
        keys_client = open(KEYS).ok();
        keys_client.is_some()
    });

    // The phrase: the first 4 bars of Twinkle at 120 BPM (one beat = 24000 frames), velocity 64.
    let mut phrase: Vec<(u32, [u8; 3])> = [60u8, 60, 67, 67, 69, 69, 67, 0, 65, 65, 64, 64, 62, 62, 60]
        .iter()
        .enumerate()
        .filter(|(_, k)| **k > 0)
        .flat_map(|(i, &k)| {
            let at = i as u32 * 24_000;
            let len = if i == 6 || i == 14 { 40_000 } else { 20_000 };
            [(at, [0x90, k, 64]), (at + len, [0x80, k, 64])]
        })
        .collect();
    phrase.sort_by_key(|(at, _)| *at);
    let go = Arc::new(AtomicBool::new(false));
    let (sent_tx, sent_rx) = sync_channel(1024);
    let (heard_tx, heard_rx) = sync_channel(65_536);
    let (missed_tx, missed_rx) = sync_channel(65_536);
    let keys_client = keys_client.expect("the JACK client that plays");
    let port = keys_client.register_port("phrase", MidiOut::default()).expect("keys port");
    let keys = Keys { port, phrase: phrase.clone(), go: go.clone(), start: None, next: 0, sent: sent_tx };
    let keys_client = keys_client.activate_async((), keys).expect("keys client runs");
    let ears_client = open(EARS).expect("the JACK client that hears");
    let port = ears_client.register_port("heard", MidiIn::default()).expect("ears port");
    let ears = Ears { port, heard: heard_tx, expected: None, missed: missed_tx };
    let _ears_client = ears_client.activate_async((), ears).expect("ears client runs");
    let jack = keys_client.as_client();

    let home = tmp.path().join("home");
    std::fs::create_dir_all(&home).expect("home");
    let log = std::fs::File::create(tmp.path().join("standalone.log")).expect("log");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cadenza-standalone"));
    cmd.args(["--backend", "jack", "--answer"])
        .env("DISPLAY", format!(":{display}"))
        .env("CADENZA_RESOURCES", &resources)
        .env("XDG_DATA_HOME", tmp.path().join("xdg"))
        .env("HOME", &home)
        .env("LIBGL_ALWAYS_SOFTWARE", "1")
        .env("JACK_NO_START_SERVER", "1")
        .stdout(log.try_clone().expect("log"))
        .stderr(log);
    let mut cadenza = spawn("cadenza-standalone", &mut cmd);
    wait_for("Cadenza's JACK ports", Duration::from_secs(60), || {
        jack.port_by_name("cadenza:midi_input").is_some() && jack.port_by_name("cadenza:midi_output").is_some()
    });
    let keys_out = format!("{KEYS}:phrase");
    let ears_in = format!("{EARS}:heard");
    // Its ports exist a moment before its client is active, and only then take connections.
    for (from, to) in [(keys_out.as_str(), "cadenza:midi_input"), ("cadenza:midi_output", ears_in.as_str())] {
        wait_for(&format!("a connection from {from} to {to}"), Duration::from_secs(15), || {
            jack.connect_ports_by_name(from, to).is_ok()
        });
    }

    // The editor before anything was played, to compare with the one after.
    std::thread::sleep(Duration::from_millis(2000));
    let before = read_xwd(&std::fs::read(fb.join("Xvfb_screen0")).expect("framebuffer dump"));

    // Play. Pass-through first (each event back in the cycle it was sent), then the answer after a
    // bar of silence.
    go.store(true, Ordering::Release);
    let started = Instant::now();
    let (mut sent, mut heard, mut missed) = (Vec::<Event>::new(), Vec::<Event>::new(), Vec::<(u32, u32)>::new());
    let answer = loop {
        sent.extend(sent_rx.try_iter());
        heard.extend(heard_rx.try_iter());
        missed.extend(missed_rx.try_iter());
        let echoed = echoes(&sent, &heard);
        let phrase_end = sent.last().map(|e| e.frame + PERIOD).filter(|_| sent.len() == phrase.len());
        let is_echo = |i: usize| echoed.contains(&Some(i));
        let answer: Vec<Event> = match phrase_end {
            Some(end) => heard
                .iter()
                .enumerate()
                .filter(|(i, h)| h.note_on() && h.frame > end && !is_echo(*i))
                .map(|(_, h)| *h)
                .collect(),
            None => Vec::new(),
        };
        let exited = cadenza.0.try_wait().ok().flatten();
        let timed_out = started.elapsed() > Duration::from_secs(50);
        if answer.is_empty() && exited.is_none() && !timed_out {
            std::thread::sleep(Duration::from_millis(200));
            continue;
        }
        // An echo the ears missed (their cycle skipped on a loaded machine) is excused; any other
        // missing echo is a note Cadenza dropped, and a note it played during the phrase is wrong.
        let lost_by_ears = |e: &Event| missed.iter().any(|&(from, to)| (from..to).contains(&e.frame));
        let dropped: Vec<Event> =
            sent.iter().zip(&echoed).filter(|(s, e)| e.is_none() && !lost_by_ears(s)).map(|(s, _)| *s).collect();
        let excused = sent.iter().zip(&echoed).filter(|(_, e)| e.is_none()).count() - dropped.len();
        let early: Vec<Event> = heard
            .iter()
            .enumerate()
            .filter(|(i, h)| h.note_on() && !is_echo(*i) && phrase_end.is_none_or(|end| h.frame <= end))
            .map(|(_, h)| *h)
            .collect();
        let ok = !answer.is_empty() && dropped.is_empty() && early.is_empty() && excused <= 4;
        if ok {
            if excused > 0 {
                eprintln!("the test's own client missed {excused} of the phrase's echoes (a loaded machine)");
            }
            break answer;
        }
        // Say what JACK saw, the short summary last.
        let connections = |port: &str| jack.port_by_name(port).map(|p| p.get_connections());
        panic!(
            "heard:\n{heard:?}\njackd log:\n{}\nstandalone log:\n{}\n\
             sent {} of the phrase's {} events (frames {:?} to {:?}); heard {} events, {} of them echoes\n\
             answer: {} note-ons; dropped by Cadenza: {dropped:?}; played during the phrase: {early:?}\n\
             cycles the ears missed: {} ({:?}); echoes excused: {excused}\n\
             Cadenza's connections: input {:?}, output {:?}; standalone {}\n\
             {}",
            read("jackd.log"),
            read("standalone.log"),
            sent.len(),
            phrase.len(),
            sent.first().map(|e| e.frame),
            sent.last().map(|e| e.frame),
            heard.len(),
            echoed.iter().flatten().count(),
            answer.len(),
            missed.len(),
            missed.iter().take(8).collect::<Vec<_>>(),
            connections("cadenza:midi_input"),
            connections("cadenza:midi_output"),
            match exited {
                Some(status) => format!("exited ({status})"),
                None => "running".into(),
            },
            match (exited, timed_out) {
                (Some(_), _) => "the standalone exited",
                (None, true) => "no answer within 50 s",
                (None, false) => "the phrase was not passed through note for note",
            }
        );
    };
    eprintln!("answer: {} note-ons, first {:?}", answer.len(), answer.first());
    assert!(answer.iter().all(|e| (21..=108).contains(&e.bytes[1])), "piano range");

    // The chosen variation plays from its first bar while the rest are made (the progress bar stands
    // where the Generate button was): photograph the screen once the editor has drawn them all.
    let pixels = |img: &Image| -> Vec<[u8; 3]> { img.rgb.chunks_exact(3).map(|p| [p[0], p[1], p[2]]).collect() };
    let count = |px: &[[u8; 3]], c: [u8; 3]| px.iter().filter(|p| **p == c).count();
    let before_px = pixels(&before);
    let drawn = Instant::now();
    let img = loop {
        std::thread::sleep(Duration::from_millis(500));
        let img = read_xwd(&std::fs::read(fb.join("Xvfb_screen0")).expect("framebuffer dump"));
        let px = pixels(&img);
        let done = count(&px, GENERATED_RGB) > count(&before_px, GENERATED_RGB) + 30
            && count(&px, PRIMER_RGB) > count(&before_px, PRIMER_RGB) + 30;
        if done || drawn.elapsed() > Duration::from_secs(30) {
            break img;
        }
    };
    let shots = repo_root().join("target").join("screenshots");
    std::fs::create_dir_all(&shots).expect("screenshots dir");
    let png_path = shots.join("cadenza-editor.png");
    write_png(&img, &png_path);
    eprintln!("editor screenshot: {}", png_path.display());
    let after_px = pixels(&img);
    let mut colours = after_px.clone();
    colours.sort_unstable();
    colours.dedup();
    let background = count(&after_px, [0, 0, 0]);
    eprintln!(
        "{} x {}, {} colours, {:.0}% black; primer colour {} -> {} pixels, generated colour {} -> {} pixels",
        img.width,
        img.height,
        colours.len(),
        100.0 * background as f64 / after_px.len() as f64,
        count(&before_px, PRIMER_RGB),
        count(&after_px, PRIMER_RGB),
        count(&before_px, GENERATED_RGB),
        count(&after_px, GENERATED_RGB)
    );
    assert!(colours.len() > 64, "the screen is not blank");
    assert!(background < after_px.len() / 2, "the editor fills the window");
    assert!(
        count(&after_px, PRIMER_RGB) > count(&before_px, PRIMER_RGB) + 30,
        "the primer's notes are drawn in its colour"
    );
    assert!(
        count(&after_px, GENERATED_RGB) > count(&before_px, GENERATED_RGB) + 30,
        "the generated notes are drawn in theirs"
    );
}
