//! Text-line recognition (PP-OCRv4 rec): a line resized to 48 pixels high goes in, one
//! probability distribution over 6625 classes per 8 pixels of width comes out, and greedy CTC
//! decoding turns that sequence into text.

use std::borrow::Cow;

use image::{RgbImage, imageops};

use super::direction::scaled_width;
use super::{
    OcrError, Result, append_padded, check_not_empty, checked_output, ppocr_normalisation,
};
use crate::preprocess::Normalisation;
use crate::runtime::{Input, Model};

/// How lines become the recogniser's input.
#[derive(Debug, Clone, PartialEq)]
pub struct RecognizerOptions {
    pub normalisation: Normalisation,
    /// Lines are resized to this height, keeping their aspect ratio (the network's fixed height).
    pub height: u32,
    /// Narrower lines are stretched to it: the network needs a few output steps.
    pub min_width: u32,
    /// Wider lines are squeezed to it, bounding the time of one line; 960 is an aspect of 20:1,
    /// five times a plate's.
    pub max_width: u32,
    /// Lines per run. The lines of a batch are padded to the widest, so lines are batched in
    /// order of width to pad little.
    pub batch_size: usize,
}

impl Default for RecognizerOptions {
    fn default() -> Self {
        Self {
            normalisation: ppocr_normalisation(),
            height: 48,
            min_width: 16,
            max_width: 960,
            batch_size: 6,
        }
    }
}

/// What one line reads.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Recognition {
    pub text: String,
    /// Mean of the maximum probability of each step that produced a symbol; 0 for no text.
    pub confidence: f32,
}

/// The PP-OCR text-line recogniser with its symbol table.
#[derive(Debug)]
pub struct TextRecognizer {
    model: Model,
    alphabet: Vec<String>,
    options: RecognizerOptions,
}

impl TextRecognizer {
    /// With the alphabet the model file carries (metadata `character`), so the symbols always
    /// match the weights.
    pub fn new(model: Model) -> Result<Self> {
        Self::with_options(model, RecognizerOptions::default())
    }

    pub fn with_options(model: Model, options: RecognizerOptions) -> Result<Self> {
        let alphabet = model
            .metadata("character")
            .ok_or_else(|| {
                OcrError::Alphabet(format!(
                    "{} has no `character` metadata; give the keys file instead",
                    model.name()
                ))
            })?
            .lines()
            .map(String::from)
            .collect();
        Self::with_alphabet(model, alphabet, options)
    }

    /// With an alphabet from elsewhere (`ppocr_keys_v1.txt`, one symbol a line): symbol `i` is
    /// class `i + 1`. Checked against the classes the model declares: a keys file of another
    /// model version would shift every symbol.
    pub fn with_alphabet(
        model: Model,
        alphabet: Vec<String>,
        options: RecognizerOptions,
    ) -> Result<Self> {
        if alphabet.is_empty() {
            return Err(OcrError::Alphabet("no symbols".into()));
        }
        let declared = model
            .outputs()
            .first()
            .and_then(|output| output.shape.last().copied());
        if let Some(classes) = declared.filter(|&c| c > 0)
            && classes as usize != alphabet.len() + 2
        {
            return Err(OcrError::Alphabet(format!(
                "{} symbols + blank + space do not match the {classes} classes of {}",
                alphabet.len(),
                model.name()
            )));
        }
        Ok(Self {
            model,
            alphabet,
            options,
        })
    }

    pub fn alphabet(&self) -> &[String] {
        &self.alphabet
    }

    pub fn options(&self) -> &RecognizerOptions {
        &self.options
    }

    /// Reads each line, in order.
    pub fn recognize(&self, lines: &[RgbImage]) -> Result<Vec<Recognition>> {
        for line in lines {
            check_not_empty(line)?;
        }
        let RecognizerOptions {
            normalisation,
            height,
            min_width,
            max_width,
            batch_size,
        } = &self.options;
        let widths: Vec<u32> = lines
            .iter()
            .map(|line| scaled_width(line, *height).clamp(*min_width, (*max_width).max(*min_width)))
            .collect();
        let mut order: Vec<usize> = (0..lines.len()).collect();
        order.sort_by_key(|&i| widths[i]);
        let classes = self.alphabet.len() + 2;
        let mut results = vec![Recognition::default(); lines.len()];
        for batch in order.chunks((*batch_size).max(1)) {
            let batch_width = batch.iter().map(|&i| widths[i]).max().unwrap_or(1);
            let mut tensor =
                Vec::with_capacity(batch.len() * 3 * batch_width as usize * *height as usize);
            for &i in batch {
                let line = &lines[i];
                let resized = if line.dimensions() == (widths[i], *height) {
                    Cow::Borrowed(line)
                } else {
                    Cow::Owned(imageops::resize(
                        line,
                        widths[i],
                        *height,
                        imageops::FilterType::Triangle,
                    ))
                };
                append_padded(normalisation, &resized, batch_width, &mut tensor);
            }
            let shape = normalisation.shape(batch.len(), batch_width, *height);
            let outputs = self.model.run(&[Input {
                shape: &shape,
                data: &tensor,
            }])?;
            let output = checked_output(
                self.model.name(),
                &outputs,
                &[Some(batch.len()), None, Some(classes)],
            )?;
            let per_line = output.data.len() / batch.len();
            for (probs, &i) in output.data.chunks_exact(per_line.max(1)).zip(batch) {
                results[i] = ctc_decode(probs, &self.alphabet);
            }
        }
        Ok(results)
    }
}

/// Greedy CTC decoding of `probs`, one row of `alphabet.len() + 2` class probabilities per time
/// step (a trailing partial row is ignored): the most likely class of each step, repeats merged
/// (a symbol spanning several steps is one symbol), blanks dropped (class 0, which also
/// separates a symbol written twice). Classes 1..=n are `alphabet[0..n]`, class n + 1 is a space.
pub fn ctc_decode(probs: &[f32], alphabet: &[String]) -> Recognition {
    let classes = alphabet.len() + 2;
    let mut text = String::new();
    let mut kept = Vec::new();
    let mut previous = 0;
    for step in probs.chunks_exact(classes) {
        // The first of equal maxima, as numpy's argmax; NaN never wins.
        let mut best = 0;
        let mut probability = f32::NEG_INFINITY;
        for (class, &p) in step.iter().enumerate() {
            if p > probability {
                (best, probability) = (class, p);
            }
        }
        if best != 0 && best != previous {
            match alphabet.get(best - 1) {
                Some(symbol) => text.push_str(symbol),
                None => text.push(' '),
            }
            kept.push(probability);
        }
        previous = best;
    }
    let confidence = if kept.is_empty() {
        0.0
    } else {
        kept.iter().sum::<f32>() / kept.len() as f32
    };
    Recognition { text, confidence }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One step per entry: the class that wins it, with probability 0.9 (0.1 shared by no one
    /// else, so rows need not sum to 1 for the decoder).
    fn steps(winners: &[usize], classes: usize) -> Vec<f32> {
        winners
            .iter()
            .flat_map(|&winner| (0..classes).map(move |c| if c == winner { 0.9 } else { 0.0 }))
            .collect()
    }

    fn alphabet() -> Vec<String> {
        ["京", "A", "1"].map(String::from).to_vec()
    }

    #[test]
    fn ctc_merges_repeats_and_drops_blanks() {
        let decoded = ctc_decode(&steps(&[0, 1, 1, 0, 2, 2, 2, 0], 5), &alphabet());
        assert_eq!(decoded.text, "京A");
        assert!((decoded.confidence - 0.9).abs() < 1e-6);
    }

    #[test]
    fn ctc_blank_between_repeats_keeps_both() {
        let decoded = ctc_decode(&steps(&[3, 3, 0, 3, 0, 0, 3], 5), &alphabet());
        assert_eq!(decoded.text, "111");
    }

    #[test]
    fn ctc_last_class_is_a_space() {
        let decoded = ctc_decode(&steps(&[2, 0, 4, 4, 3], 5), &alphabet());
        assert_eq!(decoded.text, "A 1");
    }

    #[test]
    fn ctc_confidence_is_the_mean_over_kept_steps_only() {
        let mut probs = steps(&[0, 1, 1, 2], 5);
        probs[2 * 5 + 1] = 0.5; // the repeat of '京' does not count…
        probs[3 * 5 + 2] = 0.7; // …'A' does.
        let decoded = ctc_decode(&probs, &alphabet());
        assert_eq!(decoded.text, "京A");
        assert!((decoded.confidence - 0.8).abs() < 1e-6);
    }

    #[test]
    fn ctc_of_blanks_alone_is_empty_with_zero_confidence() {
        let decoded = ctc_decode(&steps(&[0, 0, 0], 5), &alphabet());
        assert_eq!(decoded, Recognition::default());
        // A partial row (a malformed tensor) is ignored, not read out of bounds.
        assert_eq!(ctc_decode(&[0.1, 0.9], &alphabet()), Recognition::default());
    }
}
