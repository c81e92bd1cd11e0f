//! How a classifier's outputs become class scores and probabilities: a softmax over logits, one
//! sigmoid logit (a binary classifier, Keras' `Dense(1, activation="sigmoid")`: two classes,
//! the negative one scored by the negated logit), or a sigmoid per class (multi-label). Scores
//! are what CAMs explain (logits, as pytorch-grad-cam uses); probabilities are what is shown.

use anyhow::{bail, Result};
use serde::Deserialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Head {
    /// One logit per class, probabilities by softmax.
    Softmax,
    /// One logit `l` for two classes: class 1 (positive) scores `l` with probability
    /// `sigmoid(l)`, class 0 scores `-l` with `1 - sigmoid(l)`.
    Sigmoid,
    /// One logit per class, each class's probability its own sigmoid.
    Multilabel,
}

impl Head {
    /// The head model.toml names, else the one the output width implies: one output is a
    /// sigmoid, more a softmax.
    pub fn resolve(named: Option<Head>, outputs: usize) -> Result<Head> {
        match (named, outputs) {
            (Some(Head::Sigmoid), n) if n != 1 => bail!(
                "model.toml says output = \"sigmoid\" (one logit), but the model has {n} outputs; \
                 use \"multilabel\" for a sigmoid per class"
            ),
            (Some(head), _) => Ok(head),
            (None, 1) => Ok(Head::Sigmoid),
            (None, _) => Ok(Head::Softmax),
        }
    }

    /// Classes for a network with `outputs` outputs.
    pub fn classes(self, outputs: usize) -> usize {
        match self {
            Head::Sigmoid => 2,
            Head::Softmax | Head::Multilabel => outputs,
        }
    }

    /// Each class's score (its logit) from the network's outputs.
    pub fn scores(self, outputs: &[f32]) -> Vec<f32> {
        match self {
            Head::Sigmoid => vec![-outputs[0], outputs[0]],
            Head::Softmax | Head::Multilabel => outputs.to_vec(),
        }
    }

    /// `d score[class] / d outputs`: where a class's gradient starts.
    pub fn seed(self, class: usize, outputs: usize) -> Vec<f32> {
        let mut seed = vec![0f32; outputs];
        match self {
            Head::Sigmoid => seed[0] = if class == 0 { -1.0 } else { 1.0 },
            Head::Softmax | Head::Multilabel => seed[class] = 1.0,
        }
        seed
    }

    /// Each class's probability from its score.
    pub fn probabilities(self, scores: &[f32]) -> Vec<f32> {
        match self {
            Head::Softmax => {
                let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let exp: Vec<f64> = scores.iter().map(|&l| ((l - max) as f64).exp()).collect();
                let sum: f64 = exp.iter().sum();
                exp.iter().map(|e| (e / sum) as f32).collect()
            }
            Head::Sigmoid | Head::Multilabel => scores
                .iter()
                .map(|&l| (1.0 / (1.0 + (-(l as f64)).exp())) as f32)
                .collect(),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Head::Softmax => "softmax",
            Head::Sigmoid => "sigmoid",
            Head::Multilabel => "multilabel",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_read_outputs_as_their_kind() {
        assert_eq!(Head::resolve(None, 1).unwrap(), Head::Sigmoid);
        assert_eq!(Head::resolve(None, 10).unwrap(), Head::Softmax);
        assert!(Head::resolve(Some(Head::Sigmoid), 3).is_err());
        assert_eq!(
            Head::resolve(Some(Head::Softmax), 1).unwrap(),
            Head::Softmax
        );
        let softmax = Head::Softmax.probabilities(&[1.0, 1.0, 1.0, 1.0]);
        assert!(softmax.iter().all(|p| (p - 0.25).abs() < 1e-7));
        // Multi-label: each its own sigmoid, not summing to one.
        let multi = Head::Multilabel.probabilities(&[0.0, 2.0]);
        assert!((multi[0] - 0.5).abs() < 1e-7 && (multi[1] - 0.880_797).abs() < 1e-6);
        let scores = Head::Sigmoid.scores(&[2.0]);
        assert_eq!(scores, vec![-2.0, 2.0]);
        let p = Head::Sigmoid.probabilities(&scores);
        assert!((p[0] + p[1] - 1.0).abs() < 1e-7 && p[1] > p[0]);
        assert_eq!(Head::Sigmoid.seed(0, 1), vec![-1.0]);
        assert_eq!(Head::Softmax.seed(2, 3), vec![0.0, 0.0, 1.0]);
    }
}
