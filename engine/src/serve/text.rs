//! A completion's text as its tokens arrive: deltas from the incremental decoder, cut at the first
//! stop string, and with any tail that could still become a stop string held back, so that the
//! streamed pieces always add up to the text a non-streamed request returns.

use crate::error::Result;
use crate::tokenizer::{IncrementalDecoder, ModelTokenizer};

/// The text of one completion, built token by token.
#[derive(Debug, Clone)]
pub struct TextStream {
    decoder: IncrementalDecoder,
    stops: Vec<String>,
    /// Everything decoded so far (cut at the stop string once one is found).
    text: String,
    /// Bytes of `text` already handed out.
    sent: usize,
    stopped: bool,
}

impl TextStream {
    /// Special tokens are left out of the text, as `engine generate` does. Empty stop strings
    /// are ignored.
    pub fn new(stops: Vec<String>) -> Self {
        Self {
            decoder: IncrementalDecoder::new(true),
            stops: stops.into_iter().filter(|s| !s.is_empty()).collect(),
            text: String::new(),
            sent: 0,
            stopped: false,
        }
    }

    /// Whether a stop string has ended the text.
    pub fn stopped(&self) -> bool {
        self.stopped
    }

    /// Adds a token; returns the text that is now safe to hand out (possibly empty).
    pub fn push(&mut self, tokenizer: &ModelTokenizer, id: u32) -> Result<String> {
        if self.stopped {
            return Ok(String::new());
        }
        if let Some(delta) = self.decoder.step(tokenizer, id)? {
            self.append(&delta);
        }
        Ok(self.take(self.safe_end()))
    }

    /// At the end of generation: whatever the decoder and the stop-string check still hold.
    pub fn finish(&mut self, tokenizer: &ModelTokenizer) -> Result<String> {
        if !self.stopped {
            if let Some(rest) = self.decoder.flush(tokenizer)? {
                self.append(&rest);
            }
        }
        Ok(self.take(self.text.len()))
    }

    /// Appends decoded text and cuts it at the first stop string, if one now appears.
    fn append(&mut self, delta: &str) {
        // A new match must end in the new text, so it starts at most `longest - 1` bytes back.
        let longest = self.stops.iter().map(String::len).max().unwrap_or(0);
        let mut from = self.text.len().saturating_sub(longest.saturating_sub(1));
        while !self.text.is_char_boundary(from) {
            from -= 1;
        }
        self.text.push_str(delta);
        let cut = self
            .stops
            .iter()
            .filter_map(|stop| self.text[from..].find(stop.as_str()).map(|at| from + at))
            .min();
        if let Some(cut) = cut {
            self.text.truncate(cut);
            self.stopped = true;
        }
    }

    /// The end of the text that can go out now: all of it, less a tail that is the start of a
    /// stop string.
    fn safe_end(&self) -> usize {
        if self.stopped {
            return self.text.len();
        }
        let bytes = self.text.as_bytes();
        let unsent = bytes.len() - self.sent;
        let held = self
            .stops
            .iter()
            .flat_map(|stop| {
                let stop = stop.as_bytes();
                (1..stop.len().min(unsent + 1))
                    .rev()
                    .find(|&j| bytes.ends_with(&stop[..j]))
            })
            .max()
            .unwrap_or(0);
        let mut end = bytes.len() - held;
        while !self.text.is_char_boundary(end) {
            end -= 1;
        }
        end.max(self.sent)
    }

    fn take(&mut self, end: usize) -> String {
        let out = self.text[self.sent..end].to_owned();
        self.sent = end;
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds the byte pieces of `text` through the hold-back and stop logic without a
    /// tokenizer (the decoder is exercised in `tokenizer.rs`).
    fn run(pieces: &[&str], stops: &[&str]) -> (Vec<String>, String, bool) {
        let mut stream = TextStream::new(stops.iter().map(|s| s.to_string()).collect());
        let mut out = Vec::new();
        for piece in pieces {
            if stream.stopped() {
                break;
            }
            stream.append(piece);
            let end = stream.safe_end();
            out.push(stream.take(end));
        }
        let end = stream.text.len();
        out.push(stream.take(end));
        (out, stream.text.clone(), stream.stopped)
    }

    #[test]
    fn holds_back_a_possible_stop_and_cuts_at_it() {
        let (out, text, stopped) = run(&["Hello", " wor", "ld. The", " END", " more"], &["END"]);
        assert_eq!(out.concat(), text);
        assert_eq!(text, "Hello world. The ");
        assert!(stopped);
        // "The E..." never went out before the match.
        assert!(out.iter().all(|piece| !piece.contains('E')), "{out:?}");
    }

    #[test]
    fn a_false_start_is_released() {
        let (out, text, stopped) = run(&["ab", "c", "x", "y"], &["cd"]);
        assert_eq!(out, vec!["ab", "", "cx", "y", ""]);
        assert_eq!(text, "abcxy");
        assert!(!stopped);
    }

    #[test]
    fn earliest_of_several_stops_wins_across_pieces() {
        let (out, text, _) = run(&["one tw", "o three"], &["three", "two"]);
        assert_eq!(text, "one ");
        assert_eq!(out.concat(), "one ");
    }

    #[test]
    fn multibyte_text_is_never_split() {
        let (out, text, stopped) = run(&["é", "🦙", "ü"], &["🦙ü!"]);
        assert_eq!(out.concat(), text);
        assert_eq!(text, "é🦙ü");
        assert!(!stopped);
        assert_eq!(out[0], "é");
    }

    #[test]
    fn no_stops_passes_everything_through() {
        let (out, text, stopped) = run(&["a", "b"], &[""]);
        assert_eq!(out, vec!["a", "b", ""]);
        assert_eq!(text, "ab");
        assert!(!stopped);
    }
}
