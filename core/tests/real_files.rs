//! Real MIDI files from every corpus source (`tests/fixtures/`, sources and
//! licences in its README): the codec's round trip keeps every note, and
//! damaged copies of them get clean typed errors that name the file.

use std::path::{Path, PathBuf};

use cadenza_core::codec;
use cadenza_core::compare::{compare, ONSET_TOLERANCE_MS};
use cadenza_core::midi::{self, MidiError, MidiErrorKind, ReadOptions, WriteOptions};
use cadenza_core::Performance;
use midly::{Smf, TrackEventKind};

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures")
}

fn fixtures() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(fixture_dir())
        .expect("tests/fixtures exists")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "mid"))
        .collect();
    files.sort();
    files
}

fn fixture(prefix: &str) -> PathBuf {
    fixtures()
        .into_iter()
        .find(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with(prefix)))
        .unwrap_or_else(|| panic!("no fixture starting with {prefix}"))
}

/// A scratch folder for this test binary.
fn scratch() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("cadenza-real-files-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

#[test]
fn fixtures_come_from_every_corpus_source() {
    let names: Vec<String> =
        fixtures().iter().map(|p| p.file_name().expect("name").to_string_lossy().into_owned()).collect();
    for source in ["npm-", "openmsx-", "music21-", "mma-"] {
        assert!(names.iter().any(|n| n.starts_with(source)), "no {source} fixture in {names:?}");
    }
    let readme = std::fs::read_to_string(fixture_dir().join("README.md")).expect("README.md");
    for n in &names {
        assert!(readme.contains(n.as_str()), "README.md does not describe {n}");
        let size = std::fs::metadata(fixture_dir().join(n)).expect("size").len();
        assert!(size < 100_000, "{n} is {size} bytes");
    }
}

/// The notes that strike a key within 10 ms of another onset of the same
/// key: unison doublings of merged parts, which one piano key (and the codec)
/// sounds as one note with one velocity.
fn without_unisons(perf: &Performance) -> Performance {
    let tol_s = ONSET_TOLERANCE_MS / 1000.0;
    let doubled = |i: usize| {
        let n = &perf.notes[i];
        perf.notes
            .iter()
            .enumerate()
            .any(|(j, m)| j != i && m.pitch == n.pitch && (m.start_s - n.start_s).abs() <= tol_s)
    };
    Performance::new((0..perf.notes.len()).filter(|&i| !doubled(i)).map(|i| perf.notes[i]).collect())
}

#[test]
fn every_fixture_round_trips_faithfully() {
    let dir = scratch();
    for path in fixtures() {
        let name = path.file_name().expect("name").to_string_lossy().into_owned();
        let original = midi::read_file(&path, &ReadOptions::default()).expect("fixture reads");
        assert!(original.notes.len() >= 50, "{name}: only {} notes", original.notes.len());
        let events = codec::encode(&original);
        let decoded = codec::decode(&events);
        let out = dir.join(&name);
        midi::write_performance_file(&out, &decoded, &WriteOptions::default()).expect("write");
        let back = midi::read_file(&out, &ReadOptions::default()).expect("written file reads");
        // Every note keeps its pitch and its onset within 10 ms.
        let cmp = compare(&original, &back);
        assert_eq!(cmp.unmatched, 0, "{name}: {cmp:?}");
        assert!(cmp.max_onset_error_ms <= ONSET_TOLERANCE_MS, "{name}: {cmp:?}");
        // Every note with its key to itself keeps its velocity bin.
        let solo = without_unisons(&original);
        let solo_cmp = compare(&solo, &back);
        assert!(solo_cmp.faithful(), "{name}: {solo_cmp:?}");
        if name.starts_with("npm-") || name.starts_with("music21-") || name.starts_with("mma-") {
            // These have no unisons to speak of: the strict check holds.
            assert!(cmp.faithful(), "{name}: {cmp:?}");
        } else {
            assert!(solo.notes.len() * 4 >= original.notes.len(), "{name}: too few solo notes to test");
        }
    }
}

fn read_err(name: &str, bytes: &[u8]) -> MidiError {
    let path = scratch().join(name);
    std::fs::write(&path, bytes).expect("write damaged copy");
    let err = match midi::read_file(&path, &ReadOptions::default()) {
        Ok(perf) => panic!("{name}: read {} notes from a damaged file", perf.notes.len()),
        Err(e) => e,
    };
    assert_eq!(err.path, path);
    assert!(err.to_string().contains(name), "the message names the file: {err}");
    err
}

/// Offset of the first track chunk's length field.
fn first_track_len_at(bytes: &[u8]) -> usize {
    let header_len = u32::from_be_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]) as usize;
    let pos = 8 + header_len;
    assert_eq!(&bytes[pos..pos + 4], b"MTrk");
    pos + 4
}

#[test]
fn damaged_copies_of_real_files_get_typed_errors() {
    let good = std::fs::read(fixture("npm-")).expect("fixture");

    let err = read_err("empty.mid", &[]);
    assert!(matches!(err.kind, MidiErrorKind::Empty), "{err}");

    let err = read_err("truncated.mid", &good[..good.len() / 2]);
    assert!(matches!(err.kind, MidiErrorKind::Truncated(_)), "{err}");
    let err = read_err("truncated-header.mid", &good[..10]);
    assert!(matches!(err.kind, MidiErrorKind::Truncated(_)), "{err}");

    // A track length pointing past the end of the file, and one falling short of the track.
    let at = first_track_len_at(&good);
    let mut long = good.clone();
    long[at..at + 4].copy_from_slice(&(good.len() as u32 * 4).to_be_bytes());
    let err = read_err("chunk-too-long.mid", &long);
    assert!(matches!(err.kind, MidiErrorKind::Truncated(_)), "{err}");
    let mut short = good.clone();
    let len = u32::from_be_bytes([good[at], good[at + 1], good[at + 2], good[at + 3]]);
    short[at..at + 4].copy_from_slice(&(len / 2).to_be_bytes());
    let err = read_err("chunk-too-short.mid", &short);
    assert!(matches!(err.kind, MidiErrorKind::Malformed(_) | MidiErrorKind::Truncated(_)), "{err}");

    let mut zero = good.clone();
    zero[10..12].copy_from_slice(&[0, 0]);
    let err = read_err("zero-tracks.mid", &zero);
    assert!(matches!(err.kind, MidiErrorKind::NoTracks), "{err}");

    // A WAV file renamed .mid: RIFF/WAVE header, then PCM samples.
    let mut wav = b"RIFF".to_vec();
    wav.extend_from_slice(&(36u32 + 400).to_le_bytes());
    wav.extend_from_slice(b"WAVEfmt ");
    wav.extend_from_slice(&16u32.to_le_bytes());
    wav.extend_from_slice(&[1, 0, 1, 0]);
    wav.extend_from_slice(&44_100u32.to_le_bytes());
    wav.extend_from_slice(&88_200u32.to_le_bytes());
    wav.extend_from_slice(&[2, 0, 16, 0]);
    wav.extend_from_slice(b"data");
    wav.extend_from_slice(&400u32.to_le_bytes());
    wav.extend((0..400u32).map(|i| (i * 7 % 251) as u8));
    let err = read_err("audio.mid", &wav);
    match &err.kind {
        MidiErrorKind::NotMidi(what) => assert!(what.contains("WAV"), "{err}"),
        other => panic!("{other:?}"),
    }

    // Garbage: the real file's bytes scrambled, and text.
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let garbage: Vec<u8> = good
        .iter()
        .map(|b| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            b ^ (state as u8)
        })
        .collect();
    let err = read_err("garbage.mid", &garbage);
    assert!(matches!(err.kind, MidiErrorKind::NotMidi(_)), "{err}");
    let err = read_err("text.mid", b"X:1\nT:Not a MIDI file\nK:G\nGABc|\n");
    assert!(matches!(err.kind, MidiErrorKind::NotMidi(_)), "{err}");
}

#[test]
fn a_real_file_moved_to_the_drum_channel_is_drums_only() {
    let bytes = std::fs::read(fixture("openmsx-")).expect("fixture");
    let mut smf = Smf::parse(&bytes).expect("fixture parses");
    for track in &mut smf.tracks {
        for ev in track.iter_mut() {
            if let TrackEventKind::Midi { channel, .. } = &mut ev.kind {
                *channel = midi::DRUM_CHANNEL.into();
            }
        }
    }
    let mut drums = Vec::new();
    smf.write_std(&mut drums).expect("write");
    let err = read_err("drums-only.mid", &drums);
    assert!(matches!(err.kind, MidiErrorKind::DrumsOnly), "{err}");
    // The same file with drums kept is readable: the error is about drums, not damage.
    let path = scratch().join("drums-only.mid");
    let kept = midi::read_file(&path, &ReadOptions { keep_drums: true, ..Default::default() }).expect("with drums");
    assert!(kept.notes.len() > 50);
}
