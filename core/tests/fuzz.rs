//! Property tests that fuzz the MIDI reader and the codec: no input makes
//! them panic, and what the codec writes it reads back. The number of cases
//! per property is `PROPTEST_CASES` (256 by default); `cargo xtask fuzz`
//! runs them with a larger count and reports how many inputs ran.

use cadenza_core::codec::{self, Event, VOCAB_SIZE};
use cadenza_core::compare::compare;
use cadenza_core::midi::{self, MidiErrorKind, ReadOptions};
use cadenza_core::{Note, Performance};
use midly::{Format, Header, MetaMessage, MidiMessage, Smf, Timing, TrackEvent, TrackEventKind};
use proptest::prelude::*;

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(256)
}

/// A plausible track: notes, sustain pedal and tempo changes on random channels.
/// One generated event: (delta, kind, channel, a, b); kind 0 note on, 1 note off, 2 CC, 3 tempo.
type RawEvent = (u32, u8, u8, u8, u8);

fn track_strategy() -> impl Strategy<Value = Vec<RawEvent>> {
    prop::collection::vec((0u32..2000, 0u8..4, 0u8..16, 0u8..128, 0u8..128), 0..120)
}

fn build_smf(format: u8, ppq: u16, tracks: &[Vec<RawEvent>]) -> Vec<u8> {
    let tracks: Vec<Vec<TrackEvent>> = tracks
        .iter()
        .map(|t| {
            t.iter()
                .map(|&(delta, kind, ch, a, b)| {
                    let kind = match kind {
                        0 => TrackEventKind::Midi {
                            channel: ch.into(),
                            message: MidiMessage::NoteOn { key: a.into(), vel: b.into() },
                        },
                        1 => TrackEventKind::Midi {
                            channel: ch.into(),
                            message: MidiMessage::NoteOff { key: a.into(), vel: b.into() },
                        },
                        2 => TrackEventKind::Midi {
                            channel: ch.into(),
                            message: MidiMessage::Controller { controller: 64.into(), value: b.into() },
                        },
                        _ => TrackEventKind::Meta(MetaMessage::Tempo((u32::from(a) * 8000 + u32::from(b)).into())),
                    };
                    TrackEvent { delta: delta.into(), kind }
                })
                .collect()
        })
        .collect();
    let format = if format == 0 && tracks.len() == 1 { Format::SingleTrack } else { Format::Parallel };
    let smf = Smf { header: Header { format, timing: Timing::Metrical(ppq.max(1).into()) }, tracks };
    let mut out = Vec::new();
    smf.write_std(&mut out).expect("writing to memory");
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    /// Arbitrary bytes, and arbitrary bytes behind a MIDI header, never panic the reader.
    #[test]
    fn reader_survives_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..4000), with_header in any::<bool>()) {
        let mut data = if with_header { b"MThd\0\0\0\x06\0\x01\0\x02\x01\xe0".to_vec() } else { Vec::new() };
        data.extend_from_slice(&bytes);
        let _ = midi::parse(&data, &ReadOptions::default());
    }

    /// Valid files with random damage (flipped bytes, truncation) give a
    /// performance or a typed error, never a panic; undamaged ones always parse
    /// into notes that end after they start, unless they hold no note or only
    /// drums, which the reader refuses by name.
    #[test]
    fn reader_survives_damaged_files(
        format in 0u8..2,
        ppq in 1u16..20_000,
        tracks in prop::collection::vec(track_strategy(), 1..4),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..6),
        cut in any::<prop::sample::Index>(),
        do_cut in any::<bool>(),
    ) {
        let good = build_smf(format, ppq, &tracks);
        // Whether a note-on with a velocity above 0 sounds on channel 10 (drums: true) or on another.
        let sounding = |drums: bool| {
            tracks.iter().flatten().any(|&(_, kind, ch, _, vel)| kind == 0 && vel > 0 && (ch == 9) == drums)
        };
        match midi::parse(&good, &ReadOptions::default()) {
            Ok(perf) => {
                prop_assert!(sounding(false) && !perf.notes.is_empty(), "notes from a file without a sounding note");
                for n in &perf.notes {
                    prop_assert!(n.end_s >= n.start_s && n.start_s >= 0.0);
                }
            }
            // The only refusals of an undamaged file: nothing to play, or only drums.
            Err(MidiErrorKind::NoNotes) => prop_assert!(!sounding(false) && !sounding(true)),
            Err(MidiErrorKind::DrumsOnly) => prop_assert!(!sounding(false) && sounding(true)),
            Err(e) => prop_assert!(false, "an undamaged file did not parse: {e}"),
        }
        let mut bad = good.clone();
        for (i, b) in &flips {
            let at = i.index(bad.len());
            bad[at] = *b;
        }
        if do_cut {
            bad.truncate(cut.index(bad.len()));
        }
        let _ = midi::parse(&bad, &ReadOptions::default());
        let _ = midi::parse(&bad, &ReadOptions { sustain: false, keep_drums: true });
    }

    /// Every note of a performance survives encode → decode with its pitch,
    /// its onset within 10 ms and its velocity bin.
    #[test]
    fn codec_round_trip_keeps_every_note(raw in prop::collection::vec((21u8..109, 1u8..128, 0u32..60_000, 1u32..8_000), 0..300)) {
        // Two onsets of one key on the same 10 ms step are one note to the codec.
        let mut seen = std::collections::HashSet::new();
        let notes: Vec<Note> = raw
            .into_iter()
            .filter(|&(p, _, s, _)| seen.insert((p, codec::seconds_to_steps(f64::from(s) / 1000.0))))
            .map(|(pitch, velocity, start_ms, len_ms)| Note {
                pitch,
                velocity,
                start_s: f64::from(start_ms) / 1000.0,
                end_s: f64::from(start_ms + len_ms) / 1000.0,
            })
            .collect();
        let perf = Performance::new(notes);
        let back = codec::decode(&codec::encode(&perf));
        let cmp = compare(&perf, &back);
        prop_assert!(cmp.faithful(), "{cmp:?}");
    }

    /// Any token stream decodes without panic; one encode/decode pass later the
    /// codec is a fixed point, and the first pass keeps every decoded note.
    #[test]
    fn decoder_accepts_any_tokens(tokens in prop::collection::vec(0u16..(VOCAB_SIZE as u16 + 5), 0..1500)) {
        let p1 = codec::decode_tokens(&tokens);
        for n in &p1.notes {
            prop_assert!(n.end_s > n.start_s);
        }
        let p2 = codec::decode(&codec::encode(&p1));
        prop_assert_eq!(compare(&p1, &p2).unmatched, 0);
        let p3 = codec::decode(&codec::encode(&p2));
        prop_assert_eq!(p2, p3);
    }

    /// Augmentation keeps tokens in the vocabulary, moves every kept note by
    /// exactly the transposition and scales time by the stretch.
    #[test]
    fn augmentation_stays_in_vocabulary(
        raw in prop::collection::vec((21u8..109, 1u8..128, 0u32..20_000, 10u32..2_000), 1..100),
        t in 0usize..7,
        s in 0usize..5,
    ) {
        let perf = Performance::new(raw.into_iter().map(|(pitch, velocity, st, len)| Note {
            pitch, velocity, start_s: f64::from(st) / 1000.0, end_s: f64::from(st + len) / 1000.0,
        }).collect());
        let tokens = codec::encode_tokens(&perf);
        let (dt, k) = (codec::AUGMENT_TRANSPOSE[t], codec::AUGMENT_STRETCH[s]);
        let aug = codec::augment_tokens(&tokens, dt, k);
        prop_assert!(aug.iter().all(|&x| Event::from_token(x).is_some()));
        let before = codec::decode_tokens(&tokens);
        let after = codec::decode_tokens(&aug);
        let expect = before.notes.iter().filter(|n| (21..=108).contains(&(i16::from(n.pitch) + i16::from(dt)))).count();
        prop_assert_eq!(after.notes.len(), expect);
        let ratio = codec::tokens_duration_s(&aug) / codec::tokens_duration_s(&tokens).max(1e-9);
        prop_assert!((ratio - k).abs() < 0.02 || codec::tokens_duration_s(&tokens) < 0.5);
    }
}
