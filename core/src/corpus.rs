//! Training data: a style folder (with the `manifest.csv` of `cargo xtask
//! data`) or any folder of MIDI files, encoded once with the core codec into
//! token streams, then cut into random crops with on-the-fly augmentation.
//!
//! Each piece is framed as `START, events.., END`, so the model learns how
//! pieces open (the engine's improvisation starts from START) and end.
//!
//! Batches are a pure function of `(seed, step)`: resuming at step `s` draws
//! exactly the crops an uninterrupted run would have drawn, without saving
//! any random-generator state.

use std::path::{Path, PathBuf};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::codec::{self, AUGMENT_STRETCH, AUGMENT_TRANSPOSE};
use crate::dataset::{self, Split, MANIFEST_FILE};
use crate::locate;
use crate::midi::{self, ReadOptions};

/// One encoded piece.
#[derive(Debug, Clone)]
pub struct Piece {
    /// The MIDI file it came from.
    pub path: PathBuf,
    /// `START, events.., END` as codec tokens.
    pub tokens: Vec<u16>,
}

/// A file left out of training, and why.
#[derive(Debug, Clone)]
pub struct Skipped {
    pub path: PathBuf,
    pub reason: String,
}

/// The encoded training and validation splits of one data folder.
#[derive(Debug, Clone)]
pub struct Corpus {
    pub dir: PathBuf,
    pub train: Vec<Piece>,
    pub valid: Vec<Piece>,
    /// Files that could not be used (unreadable, not MIDI, no notes); the run goes on without them.
    pub skipped: Vec<Skipped>,
    /// SHA-256 of the manifest, or of the sorted file hashes when there is none.
    pub manifest_hash: String,
    /// One line for checkpoints and model cards.
    pub summary: String,
    /// A note when the split had to be adjusted (a tiny folder without validation files).
    pub notice: Option<String>,
}

impl Corpus {
    /// Codec events per second of music in the validation split: what turns
    /// nats per event into bits per second ([`crate::codec::bits_per_second`]).
    pub fn valid_events_per_second(&self) -> f64 {
        let events: usize = self.valid.iter().map(|p| p.tokens.len()).sum();
        let seconds: f64 = self.valid.iter().map(|p| codec::tokens_duration_s(&p.tokens)).sum();
        if seconds > 0.0 {
            events as f64 / seconds
        } else {
            0.0
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("{}: the data folder does not exist", .0.display())]
    Missing(PathBuf),
    #[error("{}: not a folder", .0.display())]
    NotAFolder(PathBuf),
    #[error("{}: cannot read: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{}: {source}", path.display())]
    Manifest { path: PathBuf, source: dataset::ManifestError },
    #[error("{}: no MIDI files (*.mid, *.midi) in this folder or below it", .0.display())]
    NoMidi(PathBuf),
    #[error("{}: none of the {count} MIDI files could be used (first: {first})", dir.display())]
    NothingUsable { dir: PathBuf, count: usize, first: String },
    #[error("{}: the training split is empty", .0.display())]
    NoTrainingData(PathBuf),
}

impl Corpus {
    /// Read and encode a data folder. With a manifest its rows decide the
    /// files and splits; without one every `*.mid`/`*.midi` below the folder
    /// is used and split by its SHA-256 ([`dataset::split_for_sha256`]).
    pub fn load(dir: &Path) -> Result<Self, DataError> {
        if !dir.exists() {
            return Err(DataError::Missing(dir.to_path_buf()));
        }
        if !dir.is_dir() {
            return Err(DataError::NotAFolder(dir.to_path_buf()));
        }
        let manifest_path = dir.join(MANIFEST_FILE);
        let (files, manifest_hash): (Vec<(PathBuf, Split)>, String) = if manifest_path.is_file() {
            let bytes = std::fs::read(&manifest_path)
                .map_err(|source| DataError::Io { path: manifest_path.clone(), source })?;
            let rows = dataset::read_manifest(&manifest_path)
                .map_err(|source| DataError::Manifest { path: manifest_path.clone(), source })?;
            (rows.into_iter().map(|r| (dir.join(&r.path), r.split)).collect(), dataset::sha256_hex(&bytes))
        } else {
            let found = locate::midi_files_below(dir).map_err(|e| DataError::Io { path: e.path, source: e.source })?;
            let mut files = Vec::new();
            let mut hashes = Vec::new();
            let mut unreadable = Vec::new();
            for path in found {
                match std::fs::read(&path) {
                    Ok(bytes) => {
                        let sha = dataset::sha256_hex(&bytes);
                        files.push((path, dataset::split_for_sha256(&sha)));
                        hashes.push(sha);
                    }
                    Err(e) => unreadable.push(Skipped { path, reason: e.to_string() }),
                }
            }
            if files.is_empty() && unreadable.is_empty() {
                return Err(DataError::NoMidi(dir.to_path_buf()));
            }
            hashes.sort();
            let hash = dataset::sha256_hex(hashes.join("\n").as_bytes());
            // A handful of files can all hash into the held-out test split;
            // a musician's folder then still trains (on all of them).
            let folded = !files.is_empty() && files.iter().all(|(_, s)| *s == Split::Test);
            if folded {
                for f in &mut files {
                    f.1 = Split::Train;
                }
            }
            let mut c = Self::encode(dir, files, hash)?;
            c.skipped.splice(0..0, unreadable);
            let mut c = c.finish()?;
            if folded {
                let note = "every file fell in the test split; training on them all".to_string();
                c.notice = Some(c.notice.map_or(note.clone(), |n| format!("{note}; {n}")));
            }
            return Ok(c);
        };
        if files.is_empty() {
            return Err(DataError::NoMidi(dir.to_path_buf()));
        }
        Self::encode(dir, files, manifest_hash)?.finish()
    }

    fn encode(dir: &Path, files: Vec<(PathBuf, Split)>, manifest_hash: String) -> Result<Self, DataError> {
        let mut corpus = Corpus {
            dir: dir.to_path_buf(),
            train: Vec::new(),
            valid: Vec::new(),
            skipped: Vec::new(),
            manifest_hash,
            summary: String::new(),
            notice: None,
        };
        let opts = ReadOptions::default();
        for (path, split) in files {
            if split == Split::Test {
                continue;
            }
            match midi::read_file(&path, &opts) {
                Ok(perf) => {
                    let mut tokens = Vec::with_capacity(perf.notes.len() * 4 + 2);
                    tokens.push(codec::START);
                    tokens.extend(codec::encode_tokens(&perf));
                    tokens.push(codec::END);
                    let piece = Piece { path, tokens };
                    match split {
                        Split::Train => corpus.train.push(piece),
                        _ => corpus.valid.push(piece),
                    }
                }
                Err(e) => corpus.skipped.push(Skipped { path, reason: e.kind.to_string() }),
            }
        }
        Ok(corpus)
    }

    /// Check that something is left, fill in a validation split for a small
    /// folder that has none, and write the summary.
    fn finish(mut self) -> Result<Self, DataError> {
        if self.train.is_empty() && self.valid.is_empty() {
            let first = self
                .skipped
                .first()
                .map(|s| format!("{}: {}", s.path.display(), s.reason))
                .unwrap_or_else(|| "only test-split files".into());
            if self.skipped.is_empty() {
                return Err(DataError::NoTrainingData(self.dir));
            }
            return Err(DataError::NothingUsable { dir: self.dir, count: self.skipped.len(), first });
        }
        if self.train.is_empty() {
            return Err(DataError::NoTrainingData(self.dir));
        }
        if self.valid.is_empty() {
            // 5% of a handful of files is nothing: hold out the last training
            // piece (by path) so validation loss still means something.
            if self.train.len() >= 2 {
                let held = self.train.pop().expect("two or more pieces");
                self.notice = Some(format!("no validation files; holding out {} for validation", held.path.display()));
                self.valid.push(held);
            } else {
                self.notice = Some("a single file: validating on the training piece".into());
                self.valid = self.train.clone();
            }
        }
        let events = |ps: &[Piece]| ps.iter().map(|p| p.tokens.len()).sum::<usize>();
        self.summary = format!(
            "{} train / {} valid files, {} / {} events, {} skipped, manifest {}",
            self.train.len(),
            self.valid.len(),
            events(&self.train),
            events(&self.valid),
            self.skipped.len(),
            &self.manifest_hash[..12.min(self.manifest_hash.len())]
        );
        Ok(self)
    }

    /// Events in the training split (sets the epoch length).
    pub fn train_events(&self) -> usize {
        self.train.iter().map(|p| p.tokens.len()).sum()
    }
}

/// Draws training batches: `batch` crops of `seq_len + 1` tokens, each from a
/// piece chosen with probability proportional to its length (so every event
/// is about equally likely to be seen), augmented, padded with PAD.
#[derive(Debug)]
pub struct Sampler {
    /// Cumulative token counts of the training pieces.
    cumulative: Vec<u64>,
    seq_len: usize,
    batch: usize,
    augment: bool,
    seed: u64,
}

impl Sampler {
    pub fn new(corpus: &Corpus, batch: usize, seq_len: usize, augment: bool, seed: u64) -> Self {
        let mut total = 0u64;
        let cumulative = corpus
            .train
            .iter()
            .map(|p| {
                total += p.tokens.len() as u64;
                total
            })
            .collect();
        Self { cumulative, seq_len, batch, augment, seed }
    }

    /// The batch of step `step`, row-major `[batch, seq_len + 1]`.
    pub fn batch(&self, corpus: &Corpus, step: u64) -> Vec<i64> {
        let mut rng = ChaCha8Rng::seed_from_u64(mix(self.seed, step));
        let total = self.cumulative.last().copied().unwrap_or(0).max(1);
        let window = self.seq_len + 1;
        let mut out = Vec::with_capacity(self.batch * window);
        for _ in 0..self.batch {
            let at = rng.gen_range(0..total);
            let index = self.cumulative.partition_point(|&c| c <= at).min(corpus.train.len() - 1);
            let tokens = &corpus.train[index].tokens;
            let (transpose, stretch) = if self.augment {
                (
                    AUGMENT_TRANSPOSE[rng.gen_range(0..AUGMENT_TRANSPOSE.len())],
                    AUGMENT_STRETCH[rng.gen_range(0..AUGMENT_STRETCH.len())],
                )
            } else {
                (0, 1.0)
            };
            // Stretching can lengthen a crop (more time shifts) or shorten it
            // (dropped notes, merged shifts): cut a margin more, then trim.
            let want = if transpose == 0 && stretch == 1.0 { window } else { window + window / 8 + 16 };
            let start = if tokens.len() > want { rng.gen_range(0..=tokens.len() - want) } else { 0 };
            let crop = &tokens[start..(start + want).min(tokens.len())];
            let augmented = codec::augment_tokens(crop, transpose, stretch);
            out.extend(augmented.iter().take(window).map(|&t| i64::from(t)));
            out.resize(out.len() + window.saturating_sub(augmented.len().min(window)), i64::from(codec::PAD));
        }
        out
    }
}

/// Fixed validation windows: consecutive `seq_len + 1` slices of every
/// validation piece (stride `seq_len`, the last one padded), thinned evenly to
/// at most `max_windows`. Row-major `[n, seq_len + 1]`.
pub fn validation_windows(corpus: &Corpus, seq_len: usize, max_windows: usize) -> Vec<Vec<i64>> {
    let window = seq_len + 1;
    let mut all = Vec::new();
    for piece in &corpus.valid {
        let mut start = 0;
        loop {
            let end = (start + window).min(piece.tokens.len());
            let mut w: Vec<i64> = piece.tokens[start..end].iter().map(|&t| i64::from(t)).collect();
            w.resize(window, i64::from(codec::PAD));
            all.push(w);
            if end == piece.tokens.len() {
                break;
            }
            start += seq_len;
        }
    }
    if max_windows == 0 || all.len() <= max_windows {
        return all;
    }
    let n = all.len();
    (0..max_windows).map(|i| all[i * n / max_windows].clone()).collect()
}

/// One 64-bit seed per (run seed, step): splitmix64 of the pair.
pub fn mix(seed: u64, step: u64) -> u64 {
    let mut z = seed ^ step.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn piece(n: usize, first: u16) -> Piece {
        Piece { path: format!("p{first}.mid").into(), tokens: (0..n).map(|i| first + (i % 50) as u16).collect() }
    }

    fn corpus() -> Corpus {
        Corpus {
            dir: "x".into(),
            train: vec![piece(1000, 0), piece(10, 100), piece(300, 200)],
            valid: vec![piece(70, 300)],
            skipped: vec![],
            manifest_hash: "h".into(),
            summary: String::new(),
            notice: None,
        }
    }

    #[test]
    fn batches_depend_only_on_seed_and_step() {
        let c = corpus();
        let s = Sampler::new(&c, 4, 32, true, 9);
        assert_eq!(s.batch(&c, 5), s.batch(&c, 5));
        assert_ne!(s.batch(&c, 5), s.batch(&c, 6));
        assert_ne!(s.batch(&c, 5), Sampler::new(&c, 4, 32, true, 10).batch(&c, 5));
        assert_eq!(s.batch(&c, 5).len(), 4 * 33);
    }

    #[test]
    fn short_pieces_are_padded_and_crops_come_from_one_piece() {
        let c = Corpus { train: vec![piece(10, 100)], ..corpus() };
        let s = Sampler::new(&c, 2, 32, false, 1);
        let b = s.batch(&c, 0);
        let row = &b[..33];
        assert_eq!(&row[..10], &(100..110).map(i64::from).collect::<Vec<_>>()[..]);
        assert!(row[10..].iter().all(|&t| t == i64::from(codec::PAD)));
    }

    #[test]
    fn validation_windows_cover_the_split_and_are_thinned() {
        let c = corpus();
        let w = validation_windows(&c, 32, 0);
        // 70 tokens, stride 32: [0,33) [32,65) [64,70)
        assert_eq!(w.len(), 3);
        assert_eq!(w[1][0], i64::from(c.valid[0].tokens[32]));
        assert_eq!(validation_windows(&c, 32, 2).len(), 2);
    }

    #[test]
    fn a_missing_or_empty_folder_is_a_typed_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(matches!(Corpus::load(&dir.path().join("nope")), Err(DataError::Missing(_))));
        assert!(matches!(Corpus::load(dir.path()), Err(DataError::NoMidi(_))));
        std::fs::write(dir.path().join("bad.mid"), b"not midi at all").expect("write");
        match Corpus::load(dir.path()) {
            Err(DataError::NothingUsable { count: 1, first, .. }) => assert!(first.contains("bad.mid"), "{first}"),
            other => panic!("expected NothingUsable, got {other:?}"),
        }
    }
}
