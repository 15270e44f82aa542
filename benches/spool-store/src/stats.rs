//! Collects one value per (metric, store, repetition) and prints medians,
//! spreads and per-repetition ratios to the baseline measured in the same repetition.

use crate::stores::Kind;
use std::time::Duration;

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Nearest-rank percentile of an unsorted sample (`p` in 0..=100).
pub fn percentile(sample: &[f64], p: f64) -> f64 {
    if sample.is_empty() {
        return f64::NAN;
    }
    let mut s = sample.to_vec();
    s.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * s.len() as f64).ceil() as usize;
    s[rank.clamp(1, s.len()) - 1]
}

fn median(v: &[f64]) -> f64 {
    percentile(v, 50.0)
}

struct Metric {
    name: String,
    /// `[redb, fjall, baseline]`, one value per repetition, in repetition order.
    values: [Vec<(usize, f64)>; 3],
}

#[derive(Default)]
pub struct Table {
    metrics: Vec<Metric>,
    notes: Vec<String>,
}

fn slot(kind: Kind) -> usize {
    match kind {
        Kind::Redb => 0,
        Kind::Fjall => 1,
        Kind::Baseline => 2,
    }
}

impl Table {
    pub fn add(&mut self, name: &str, kind: Kind, rep: usize, value: f64) {
        let idx = match self.metrics.iter().position(|m| m.name == name) {
            Some(i) => i,
            None => {
                self.metrics.push(Metric {
                    name: name.to_string(),
                    values: Default::default(),
                });
                self.metrics.len() - 1
            }
        };
        self.metrics[idx].values[slot(kind)].push((rep, value));
    }

    pub fn note(&mut self, note: String) {
        eprintln!("note: {note}");
        self.notes.push(note);
    }

    /// Markdown table: median [min–max] per store, then the median over repetitions
    /// of store/baseline, each ratio taken within one repetition.
    pub fn render(&self) -> String {
        let mut out = String::from(
            "| metric | redb | fjall | baseline | redb/base | fjall/base |\n|---|---|---|---|---|---|\n",
        );
        for m in &self.metrics {
            let cells: Vec<String> = m.values.iter().map(|v| summary(v)).collect();
            let ratio = |s: usize| {
                let r: Vec<f64> = m.values[s]
                    .iter()
                    .filter_map(|&(rep, x)| {
                        let base = m.values[2].iter().find(|&&(r, _)| r == rep)?.1;
                        (base > 0.0).then_some(x / base)
                    })
                    .collect();
                if r.is_empty() {
                    "–".to_string()
                } else {
                    format!("{:.2}×", median(&r))
                }
            };
            out += &format!(
                "| {} | {} | {} | {} | {} | {} |\n",
                m.name,
                cells[0],
                cells[1],
                cells[2],
                ratio(0),
                ratio(1)
            );
        }
        if !self.notes.is_empty() {
            out += "\nNotes:\n";
            for n in &self.notes {
                out += &format!("- {n}\n");
            }
        }
        out
    }
}

fn summary(v: &[(usize, f64)]) -> String {
    if v.is_empty() {
        return "–".to_string();
    }
    let xs: Vec<f64> = v.iter().map(|&(_, x)| x).collect();
    let lo = xs.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = xs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if xs.len() == 1 {
        fmt(xs[0])
    } else {
        format!("{} [{}–{}]", fmt(median(&xs)), fmt(lo), fmt(hi))
    }
}

fn fmt(x: f64) -> String {
    let a = x.abs();
    if a >= 100.0 || a == 0.0 {
        format!("{x:.0}")
    } else if a >= 10.0 {
        format!("{x:.1}")
    } else if a >= 1.0 {
        format!("{x:.2}")
    } else {
        format!("{x:.3}")
    }
}
