//! A multinomial logistic-regression style classifier on standardised
//! features ([`crate::features`]), trained by full-batch gradient descent
//! with L2. Small, exact and deterministic: the evaluations ask it whether
//! generated music carries its style's measurable marks, and the engine asks
//! one trained on phrases ([`StyleJudge`], shipped beside the models) whether
//! a primer is in the style that continues it.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::features::{excerpt, features, NUM_FEATURES};
use crate::Performance;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Classifier {
    pub classes: Vec<String>,
    mean: Vec<f64>,
    std: Vec<f64>,
    /// `[class][feature + 1]`, the last column the bias.
    weights: Vec<Vec<f64>>,
}

/// Training settings.
#[derive(Debug, Clone, Copy)]
pub struct Fit {
    pub epochs: usize,
    pub learning_rate: f64,
    pub l2: f64,
}

impl Default for Fit {
    fn default() -> Self {
        Self { epochs: 1500, learning_rate: 0.5, l2: 1e-3 }
    }
}

impl Classifier {
    /// Fit on `(features, class index)` samples; classes are weighted equally
    /// whatever their sizes.
    pub fn fit(classes: Vec<String>, samples: &[(Vec<f64>, usize)], fit: Fit) -> Self {
        let dim = samples.first().map_or(0, |s| s.0.len());
        let n = samples.len().max(1) as f64;
        let mut mean = vec![0.0; dim];
        let mut std = vec![0.0; dim];
        for (x, _) in samples {
            for (m, v) in mean.iter_mut().zip(x) {
                *m += v / n;
            }
        }
        for (x, _) in samples {
            for ((s, m), v) in std.iter_mut().zip(&mean).zip(x) {
                *s += (v - m).powi(2) / n;
            }
        }
        std.iter_mut().for_each(|s| *s = s.sqrt().max(1e-6));
        let k = classes.len();
        let mut counts = vec![0usize; k];
        samples.iter().for_each(|(_, c)| counts[*c] += 1);
        let class_weight: Vec<f64> =
            counts.iter().map(|&c| if c == 0 { 0.0 } else { n / (k as f64 * c as f64) }).collect();
        let mut model = Self { classes, mean, std, weights: vec![vec![0.0; dim + 1]; k] };
        let xs: Vec<Vec<f64>> = samples.iter().map(|(x, _)| model.standardise(x)).collect();
        for _ in 0..fit.epochs {
            let mut grad = vec![vec![0.0; dim + 1]; k];
            for (x, (_, y)) in xs.iter().zip(samples) {
                let p = model.probabilities_std(x);
                let w = class_weight[*y];
                for c in 0..k {
                    let err = w * (p[c] - if c == *y { 1.0 } else { 0.0 });
                    for (g, v) in grad[c].iter_mut().zip(x.iter().chain(std::iter::once(&1.0))) {
                        *g += err * v / n;
                    }
                }
            }
            for (w_c, g_c) in model.weights.iter_mut().zip(&grad) {
                for (j, (w, g)) in w_c.iter_mut().zip(g_c).enumerate() {
                    let reg = if j < dim { fit.l2 * *w } else { 0.0 };
                    *w -= fit.learning_rate * (g + reg);
                }
            }
        }
        model
    }

    fn standardise(&self, x: &[f64]) -> Vec<f64> {
        x.iter().zip(&self.mean).zip(&self.std).map(|((v, m), s)| (v - m) / s).collect()
    }

    fn probabilities_std(&self, x: &[f64]) -> Vec<f64> {
        let logits: Vec<f64> = self
            .weights
            .iter()
            .map(|w| w.iter().zip(x.iter().chain(std::iter::once(&1.0))).map(|(a, b)| a * b).sum())
            .collect();
        let max = logits.iter().copied().fold(f64::MIN, f64::max);
        let exp: Vec<f64> = logits.iter().map(|l| (l - max).exp()).collect();
        let total: f64 = exp.iter().sum();
        exp.into_iter().map(|e| e / total).collect()
    }

    /// Each class's probability for features `x`, in [`Classifier::classes`] order.
    pub fn probabilities(&self, x: &[f64]) -> Vec<f64> {
        self.probabilities_std(&self.standardise(x))
    }

    pub fn predict(&self, x: &[f64]) -> usize {
        most_likely(&self.probabilities(x))
    }

    /// How much each feature of `x` moves the log-odds of class `to` against class `from`
    /// (their logit difference, feature by feature; the biases' difference is left out).
    pub fn pulls(&self, x: &[f64], from: usize, to: usize) -> Vec<f64> {
        let (a, b) = (&self.weights[from], &self.weights[to]);
        self.standardise(x).iter().enumerate().map(|(j, v)| (b[j] - a[j]) * v).collect()
    }

    /// What it names the windows of each class (`windows[class]`), against their class.
    pub fn confusion(&self, windows: &[Vec<Performance>]) -> Confusion {
        let mut cm = Confusion::new(&self.classes);
        for (c, perfs) in windows.iter().enumerate() {
            for p in perfs {
                cm.add(c, self.predict(&features(p)));
            }
        }
        cm
    }

    /// That it reads `dim` features into at least two distinct, named classes with finite weights.
    fn validate(&self, dim: usize) -> Result<(), String> {
        let k = self.classes.len();
        if k < 2 {
            return Err(format!("it knows {k} styles; a judge needs at least two"));
        }
        if let Some(c) = self.classes.iter().enumerate().find(|(i, c)| c.is_empty() || self.classes[..*i].contains(c)) {
            return Err(format!("style `{}` is empty or named twice", c.1));
        }
        if self.mean.len() != dim || self.std.len() != dim {
            return Err(format!("it reads {} features; this build computes {dim}", self.mean.len()));
        }
        if self.weights.len() != k || self.weights.iter().any(|w| w.len() != dim + 1) {
            return Err(format!("its weights are not {k} rows of {} (the features and a bias)", dim + 1));
        }
        let numbers = self.mean.iter().chain(&self.std).chain(self.weights.iter().flatten());
        if numbers.clone().any(|x| !x.is_finite()) || self.std.iter().any(|s| *s <= 0.0) {
            return Err("a weight, mean or spread is not a finite number (spreads must be above 0)".into());
        }
        Ok(())
    }
}

/// The index of the largest of `p` (0 when empty).
fn most_likely(p: &[f64]) -> usize {
    p.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).map_or(0, |(i, _)| i)
}

/// The file the style judge is shipped in, beside the styles' models.
pub const JUDGE_FILE: &str = "style-judge.json";
/// [`StyleJudge::version`] this build reads.
pub const JUDGE_VERSION: u32 = 1;

/// A classifier trained on phrases of the real music of every shipped style
/// (`cargo xtask judge`), which the engine asks whether a primer is in the
/// style continuing it: cost alone cannot tell jazz's own phrases from a
/// nursery tune, since both cost the jazz model about as much
/// (`cargo xtask eval home`, models/eval/home.md).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StyleJudge {
    pub version: u32,
    /// The phrase length it was trained on, seconds: a primer is judged by its last phrase this long.
    pub window_s: f64,
    /// How it was made and how well it names real phrases, one line.
    pub measured: String,
    pub classifier: Classifier,
}

/// What a [`StyleJudge`] made of a primer, for the style continuing it.
#[derive(Debug, Clone, PartialEq)]
pub struct Judgement {
    /// The style it names the primer.
    pub named: String,
    /// The probability it gives the continuing style, 0..=1.
    pub own: f64,
}

impl Judgement {
    /// Whether it names the primer another style than `style`.
    pub fn names_other_than(&self, style: &str) -> bool {
        self.named != style
    }
}

impl StyleJudge {
    /// Read and check `path`; the error names the file and the problem.
    pub fn load(path: &Path) -> Result<Self, String> {
        let fail = |problem: String| format!("{}: {problem}", path.display());
        let text = std::fs::read_to_string(path).map_err(|e| fail(format!("cannot read the style judge: {e}")))?;
        let judge: Self = serde_json::from_str(&text).map_err(|e| fail(format!("not a style judge: {e}")))?;
        judge.validate().map_err(fail)?;
        Ok(judge)
    }

    /// The judge shipped beside `model` ([`JUDGE_FILE`] in its folder), if there is one.
    pub fn beside(model: &Path) -> Result<Option<Self>, String> {
        let path = Self::path_beside(model);
        if path.exists() {
            Self::load(&path).map(Some)
        } else {
            Ok(None)
        }
    }

    /// Where [`StyleJudge::beside`] looks.
    pub fn path_beside(model: &Path) -> PathBuf {
        model.parent().unwrap_or(Path::new(".")).join(JUDGE_FILE)
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.version != JUDGE_VERSION {
            return Err(format!("style judge version {}; this build reads {JUDGE_VERSION}", self.version));
        }
        if !(self.window_s.is_finite() && self.window_s > 0.0) {
            return Err(format!("phrase length {} s is not above 0", self.window_s));
        }
        self.classifier.validate(NUM_FEATURES)
    }

    /// Whether it can judge for `style` (one of its classes).
    pub fn knows(&self, style: &str) -> bool {
        self.classifier.classes.iter().any(|c| c == style)
    }

    /// What it makes of the last [`StyleJudge::window_s`] of `primer` (ending at `end_s`), for
    /// `style`; `None` when it does not know `style` or the phrase has too few notes to judge.
    pub fn judge(&self, primer: &Performance, end_s: f64, style: &str) -> Option<Judgement> {
        let own = self.classifier.classes.iter().position(|c| c == style)?;
        let phrase = excerpt(primer, (end_s - self.window_s).max(0.0), end_s);
        if phrase.notes.len() < MIN_JUDGED_NOTES {
            return None;
        }
        let p = self.classifier.probabilities(&features(&phrase));
        let named = most_likely(&p);
        Some(Judgement { named: self.classifier.classes[named].clone(), own: p[own] })
    }
}

/// Fewer notes than this are not a phrase to judge (the evaluations' windows hold at least as many).
pub const MIN_JUDGED_NOTES: usize = 8;

/// Rows: true class; columns: predicted class.
#[derive(Debug, Clone, Serialize)]
pub struct Confusion {
    pub classes: Vec<String>,
    pub counts: Vec<Vec<usize>>,
}

impl Confusion {
    pub fn new(classes: &[String]) -> Self {
        Self { classes: classes.to_vec(), counts: vec![vec![0; classes.len()]; classes.len()] }
    }

    pub fn add(&mut self, truth: usize, predicted: usize) {
        self.counts[truth][predicted] += 1;
    }

    pub fn accuracy(&self) -> f64 {
        let total: usize = self.counts.iter().flatten().sum();
        let right: usize = (0..self.classes.len()).map(|i| self.counts[i][i]).sum();
        if total == 0 {
            0.0
        } else {
            right as f64 / total as f64
        }
    }

    /// Mean of per-class recall, so a large class cannot hide a small one.
    pub fn balanced_accuracy(&self) -> f64 {
        let recalls: Vec<f64> = (0..self.classes.len())
            .filter_map(|i| {
                let row: usize = self.counts[i].iter().sum();
                (row > 0).then(|| self.counts[i][i] as f64 / row as f64)
            })
            .collect();
        if recalls.is_empty() {
            0.0
        } else {
            recalls.iter().sum::<f64>() / recalls.len() as f64
        }
    }

    /// A Markdown table.
    pub fn markdown(&self) -> String {
        let mut s = format!("| true \\ predicted | {} | n |\n|---|", self.classes.join(" | "));
        s.push_str(&"---|".repeat(self.classes.len() + 1));
        s.push('\n');
        for (i, row) in self.counts.iter().enumerate() {
            let n: usize = row.iter().sum();
            let cells: Vec<String> = row.iter().map(|c| c.to_string()).collect();
            s.push_str(&format!("| {} | {} | {n} |\n", self.classes[i], cells.join(" | ")));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn separable_classes_are_learned() {
        let classes: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        let mut samples = Vec::new();
        for i in 0..60 {
            let c = i % 3;
            let jitter = (i as f64 * 0.37).sin() * 0.3;
            let mut x = vec![jitter, -jitter, 5.0];
            x[c.min(1)] += if c == 2 { -2.0 } else { 2.0 };
            samples.push((x, c));
        }
        let model = Classifier::fit(classes.clone(), &samples, Fit::default());
        let mut cm = Confusion::new(&classes);
        for (x, y) in &samples {
            cm.add(*y, model.predict(x));
        }
        assert!(cm.accuracy() > 0.95, "{}", cm.markdown());
        assert!(cm.markdown().contains("| a |"));
        // The pulls and the biases make up the log-odds between two classes, feature by feature.
        let (x, _) = &samples[4];
        let p = model.probabilities(x);
        let pulls = model.pulls(x, 0, 1);
        let bias = model.weights[1][3] - model.weights[0][3];
        assert!((pulls.iter().sum::<f64>() + bias - (p[1] / p[0]).ln()).abs() < 1e-9);
        assert!(pulls[0].abs() > pulls[2].abs(), "the first feature tells a from b; the constant does not: {pulls:?}");
    }

    /// A judge of two styles told apart by how busy the music is: it judges a primer's last
    /// phrase, for a style it knows, and says nothing of a phrase too short to judge.
    #[test]
    fn a_judge_reads_the_primers_last_phrase() {
        use crate::Note;
        let run = |gap: f64, from: f64, to: f64| {
            let n = ((to - from) / gap) as usize;
            (0..n)
                .map(move |i| from + i as f64 * gap)
                .map(move |t| Note { pitch: 60, velocity: 80, start_s: t, end_s: t + gap })
                .collect::<Vec<_>>()
        };
        let busy = |from, to| Performance::new(run(0.125, from, to));
        let calm = |from, to| Performance::new(run(1.0, from, to));
        let classes = vec!["busy".to_string(), "calm".to_string()];
        let samples: Vec<(Vec<f64>, usize)> = (0..8)
            .flat_map(|i| [(busy(0.0, 10.0 + i as f64), 0), (calm(0.0, 10.0 + i as f64), 1)])
            .map(|(p, c)| (features(&p).to_vec(), c))
            .collect();
        let classifier = Classifier::fit(classes, &samples, Fit::default());
        let judge = StyleJudge { version: JUDGE_VERSION, window_s: 10.0, measured: "test".into(), classifier };
        judge.validate().expect("valid");
        // Thirty calm seconds, then ten busy ones: the last phrase is busy.
        let mut notes = run(1.0, 0.0, 30.0);
        notes.extend(run(0.125, 30.0, 40.0));
        let primer = Performance::new(notes);
        let j = judge.judge(&primer, 40.0, "calm").expect("judged");
        assert!(j.names_other_than("calm") && j.named == "busy" && j.own < 0.5, "{j:?}");
        assert!(!judge.judge(&primer, 30.0, "calm").expect("judged").names_other_than("calm"), "up to 30 s: calm");
        assert_eq!(judge.judge(&primer, 40.0, "jazz"), None, "a style it does not know");
        assert_eq!(judge.judge(&calm(0.0, 5.0), 5.0, "calm"), None, "five notes are no phrase");
        let mut odd = judge.clone();
        odd.classifier.classes[1] = "busy".into();
        assert!(odd.validate().expect_err("refused").contains("named twice"));
        let mut odd = judge.clone();
        odd.classifier.weights[0].pop();
        assert!(odd.validate().expect_err("refused").contains("weights are not 2 rows"));
        let mut odd = judge;
        odd.version = 9;
        assert!(odd.validate().expect_err("refused").contains("version 9"));
    }
}
