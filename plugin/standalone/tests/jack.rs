//! The standalone Cadenza as a musician without a DAW runs it: JACK's dummy
//! backend, a phrase from `jack_midiseq` into its MIDI input, `jack_midi_dump`
//! on its MIDI output, the editor in a window on Xvfb. Cadenza runs in
//! call-and-response mode (`--answer`), so after the phrase and a bar of
//! silence it must answer with generated notes; then the editor is
//! photographed from Xvfb's framebuffer and checked for the primer and the
//! continuation drawn in their colours.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cadenza_test_support::{ort_library, repo_root, test_model};

const SAMPLE_RATE: u64 = 48_000;
/// jack_midiseq loops its sequence; this long a loop leaves room for the answer before the repeat.
const LOOP_SAMPLES: u64 = 60 * SAMPLE_RATE;
/// jack_midiseq starts its loop the moment it starts, before it is connected: the phrase starts
/// this late in the loop so none of it is lost.
const LEAD_IN_SAMPLES: u64 = 2 * SAMPLE_RATE;
/// The editor's colours for primer and generated notes (`plugin/src/editor.rs`).
const PRIMER_RGB: [u8; 3] = [0x5f, 0xa8, 0xd3];
const GENERATED_RGB: [u8; 3] = [0xf2, 0xa5, 0x41];

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

/// One line of `jack_midi_dump -a`: (frame, status byte, key, velocity).
fn parse_dump(text: &str) -> Vec<(u64, u8, u8, u8)> {
    text.lines()
        .filter_map(|l| {
            let (time, rest) = l.split_once(':')?;
            let bytes: Vec<u8> =
                rest.split_whitespace().take(3).filter_map(|b| u8::from_str_radix(b, 16).ok()).collect();
            (bytes.len() == 3)
                .then(|| (time.trim().parse().ok(), bytes))
                .and_then(|(t, b)| Some((t?, b[0], b[1], b[2])))
        })
        .collect()
}

/// How far, in samples, an echoed note may sit from the note the sequencer sent: one JACK
/// period. The dump hears both (the sequencer is connected to it too), so both are read on one
/// clock. No other clock will do: `jack_midi_dump` and `jack_midiseq` each count the frames of
/// their own cycles, and on a loaded machine JACK's dummy backend skips a late client's cycle
/// now and then, so those counts drift apart by periods.
const ECHO_TOLERANCE_SAMPLES: u64 = 512;

/// Note-ons as (frame, key).
type NoteOns = Vec<(u64, u8)>;

/// The dump's note-ons split into pairs (the same key twice within the tolerance: a note the
/// sequencer sent and Cadenza passed through), each given once, and the rest.
fn pair_up(note_ons: &[(u64, u8)]) -> (NoteOns, NoteOns) {
    let mut note_ons = note_ons.to_vec();
    note_ons.sort_by_key(|(t, _)| *t);
    let mut used = vec![false; note_ons.len()];
    let (mut pairs, mut single) = (Vec::new(), Vec::new());
    for i in 0..note_ons.len() {
        if used[i] {
            continue;
        }
        let (t, key) = note_ons[i];
        let twin = (i + 1..note_ons.len())
            .take_while(|&j| note_ons[j].0 - t <= ECHO_TOLERANCE_SAMPLES)
            .find(|&j| !used[j] && note_ons[j].1 == key);
        match twin {
            Some(j) => {
                used[j] = true;
                pairs.push((t, key));
            }
            None => single.push((t, key)),
        }
    }
    (pairs, single)
}

/// Whether `part` is `whole` with some items left out, in order.
fn is_subsequence(part: &[u8], whole: &[u8]) -> bool {
    let mut rest = whole.iter();
    part.iter().all(|p| rest.any(|w| w == p))
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
    for tool in ["Xvfb", "jackd", "jack_midiseq", "jack_midi_dump", "jack_connect", "jack_lsp"] {
        assert!(on_path(tool), "{tool} is missing: run `cargo xtask setup` (Debian packages xvfb, jackd2)");
    }
    let tmp = tempfile::tempdir().expect("tmp");
    let (style, model) = test_model();
    let resources = tmp.path().join("Cadenza.clap.resources");
    std::fs::create_dir_all(resources.join("lib")).expect("lib");
    std::fs::create_dir_all(resources.join("models")).expect("models");
    std::os::unix::fs::symlink(ort_library(), resources.join("lib/libonnxruntime.so.1.31.1")).expect("ort");
    std::fs::copy(&model, resources.join("models").join(format!("{style}.onnx"))).expect("model");

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
    let jack_env = |c: &mut Command| {
        c.env("JACK_DEFAULT_SERVER", &server).env("JACK_NO_AUDIO_RESERVATION", "1").env("JACK_NO_START_SERVER", "1");
    };
    let mut cmd = Command::new("jackd");
    let jackd_log = std::fs::File::create(tmp.path().join("jackd.log")).expect("jackd log");
    cmd.args(["--no-realtime", "-n", &server, "-d", "dummy", "-r", "48000", "-p", "512"])
        .stdout(jackd_log.try_clone().expect("jackd log"))
        .stderr(jackd_log);
    jack_env(&mut cmd);
    let mut jackd = spawn("jackd", &mut cmd);
    let jack_lsp = |args: &[&str]| {
        let mut c = Command::new("jack_lsp");
        c.args(args);
        jack_env(&mut c);
        c.stderr(Stdio::null()).output().map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default()
    };
    let ports = || jack_lsp(&[]);
    // A jackd that exits at once says why in its log (JACK's shared registry full of servers that
    // were killed outright: "too many servers already active").
    wait_for("jackd", Duration::from_secs(15), || {
        if let Ok(Some(status)) = jackd.0.try_wait() {
            let log = std::fs::read_to_string(tmp.path().join("jackd.log")).unwrap_or_default();
            panic!("jackd exited ({status}); its log:\n{log}");
        }
        ports().contains("system:playback_1")
    });

    let dump_path = tmp.path().join("dump.txt");
    let mut cmd = Command::new("jack_midi_dump");
    cmd.args(["-a", "cadenza-dump"])
        .stdout(std::fs::File::create(&dump_path).expect("dump file"))
        .stderr(Stdio::null());
    jack_env(&mut cmd);
    let _dump = spawn("jack_midi_dump", &mut cmd);

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
        .stdout(log.try_clone().expect("log"))
        .stderr(log);
    jack_env(&mut cmd);
    let mut cadenza = spawn("cadenza-standalone", &mut cmd);
    wait_for("Cadenza's JACK ports", Duration::from_secs(60), || ports().contains("cadenza:midi_input"));
    let connect = |a: &str, b: &str| {
        let mut c = Command::new("jack_connect");
        c.args([a, b]);
        jack_env(&mut c);
        assert!(c.status().expect("jack_connect").success(), "jack_connect {a} {b}");
    };
    connect("cadenza:midi_output", "cadenza-dump:input");

    // The editor before anything was played, to compare with the one after.
    std::thread::sleep(Duration::from_millis(2000));
    let before = read_xwd(&std::fs::read(fb.join("Xvfb_screen0")).expect("framebuffer dump"));

    // The first 4 bars of Twinkle at 120 BPM (one beat = 24000 samples), velocity 64 (jack_midiseq's).
    let phrase: Vec<(u64, u8, u64)> = [60u8, 60, 67, 67, 69, 69, 67, 0, 65, 65, 64, 64, 62, 62, 60]
        .iter()
        .enumerate()
        .filter(|(_, k)| **k > 0)
        .map(|(i, k)| (LEAD_IN_SAMPLES + i as u64 * 24_000, *k, if i == 6 || i == 14 { 40_000 } else { 20_000 }))
        .collect();
    let mut cmd = Command::new("jack_midiseq");
    cmd.arg("cadenza-seq").arg(LOOP_SAMPLES.to_string());
    for (start, key, len) in &phrase {
        cmd.arg(start.to_string()).arg(key.to_string()).arg(len.to_string());
    }
    cmd.stdout(Stdio::null()).stderr(Stdio::null());
    jack_env(&mut cmd);
    let _seq = spawn("jack_midiseq", &mut cmd);
    wait_for("the sequencer", Duration::from_secs(10), || ports().contains("cadenza-seq:out"));
    connect("cadenza-seq:out", "cadenza-dump:input");
    connect("cadenza-seq:out", "cadenza:midi_input");

    // Pass-through first, then the answer. The dump hears the sequencer and Cadenza: every phrase
    // note twice (sent and passed through, in the same cycle), then the answer, once, after a bar
    // of silence. A loaded machine may make the dump miss a cycle, and both copies of a note with
    // it; a note heard once before the answer is a note Cadenza did not pass through.
    let keys: Vec<u8> = phrase.iter().map(|(_, k, _)| *k).collect();
    let last_len = phrase.last().expect("notes").2;
    let started = Instant::now();
    let answer = loop {
        let dump = std::fs::read_to_string(&dump_path).unwrap_or_default();
        let events = parse_dump(&dump);
        let note_ons: NoteOns = events.iter().filter(|e| e.1 & 0xf0 == 0x90 && e.3 > 0).map(|e| (e.0, e.2)).collect();
        let (pairs, single) = pair_up(&note_ons);
        if let Some(&(last, _)) = pairs.last() {
            // The bar of silence is far longer than the last note and the drift of the dump's clock.
            let end = last + last_len;
            let answer: NoteOns = single.iter().copied().filter(|(t, _)| *t > end).collect();
            if !answer.is_empty() {
                let heard: Vec<u8> = pairs.iter().map(|(_, k)| *k).collect();
                assert!(
                    heard.len() + 2 >= keys.len() && is_subsequence(&heard, &keys) && single.len() == answer.len(),
                    "the phrase passed through note for note: {} of its {} notes heard sent and passed through \
                     (keys {heard:?}), {} note-ons heard once before the answer; dump:\n{dump}",
                    heard.len(),
                    keys.len(),
                    single.len() - answer.len()
                );
                if heard.len() < keys.len() {
                    eprintln!("the dump missed {} of the phrase's notes (a loaded machine)", keys.len() - heard.len());
                }
                break answer;
            }
        }
        // A standalone that died (its ports gone with it) or a silent minute: say what JACK saw.
        let exited = cadenza.0.try_wait().ok().flatten();
        if exited.is_some() || started.elapsed() > Duration::from_secs(50) {
            let connections = jack_lsp(&["-c"]);
            let read = |name: &str| std::fs::read_to_string(tmp.path().join(name)).unwrap_or_default();
            panic!(
                "{}; dump:\n{dump}\nstandalone log:\n{}\njackd log:\n{}\nports and connections:\n{connections}",
                match exited {
                    Some(status) => format!("the standalone exited ({status})"),
                    None => "no answer within 50 s".into(),
                },
                read("standalone.log"),
                read("jackd.log")
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    eprintln!("answer: {} note-ons, first {:?}", answer.len(), answer.first());
    assert!(answer.iter().all(|(_, key)| (21..=108).contains(key)), "piano range");

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
