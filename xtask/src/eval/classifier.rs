//! A multinomial logistic-regression style classifier on standardised
//! features, trained by full-batch gradient descent with L2. Small, exact and
//! deterministic: the point is to ask whether generated music carries its
//! style's measurable marks, not to win a benchmark.

use serde::{Deserialize, Serialize};

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

    pub fn predict(&self, x: &[f64]) -> usize {
        let p = self.probabilities_std(&self.standardise(x));
        p.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).map_or(0, |(i, _)| i)
    }
}

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
    }
}
