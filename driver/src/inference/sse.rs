//! Server-Sent Events as OpenAI streams them: `data: {json}` lines, blank lines between events,
//! ending with `data: [DONE]`. Bytes arrive in arbitrary pieces; lines are cut only at `\n`.

/// What one complete line carried.
#[derive(Debug, PartialEq, Eq)]
pub enum SseLine {
    Data(String),
    Done,
    /// Blank lines, comments (`:`), `event:`/`id:`/`retry:` fields.
    Other,
}

/// Accumulates bytes and hands out complete lines.
#[derive(Debug, Default)]
pub struct SseDecoder {
    buffer: Vec<u8>,
}

impl SseDecoder {
    /// Adds `bytes` and returns the lines they completed.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<SseLine> {
        self.buffer.extend_from_slice(bytes);
        let mut lines = Vec::new();
        while let Some(end) = self.buffer.iter().position(|&b| b == b'\n') {
            let raw: Vec<u8> = self.buffer.drain(..=end).collect();
            let line = String::from_utf8_lossy(&raw);
            lines.push(classify(line.trim_end_matches(['\n', '\r'])));
        }
        lines
    }

    /// What is left after the stream ended (a last line without its newline).
    pub fn finish(&mut self) -> Option<SseLine> {
        if self.buffer.is_empty() {
            return None;
        }
        let rest = std::mem::take(&mut self.buffer);
        Some(classify(
            String::from_utf8_lossy(&rest).trim_end_matches('\r'),
        ))
    }
}

fn classify(line: &str) -> SseLine {
    match line.strip_prefix("data:") {
        Some(data) => {
            let data = data.strip_prefix(' ').unwrap_or(data);
            if data.trim() == "[DONE]" {
                SseLine::Done
            } else {
                SseLine::Data(data.to_string())
            }
        }
        None => SseLine::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_split_across_pieces_are_joined() {
        let mut d = SseDecoder::default();
        assert_eq!(d.push(b"data: {\"a\""), vec![]);
        assert_eq!(
            d.push(b": 1}\r\n\r\n: keep-alive\ndata:[DONE]\n"),
            vec![
                SseLine::Data("{\"a\": 1}".into()),
                SseLine::Other,
                SseLine::Other,
                SseLine::Done
            ]
        );
        assert_eq!(d.finish(), None);
        d.push(b"data: tail");
        assert_eq!(d.finish(), Some(SseLine::Data("tail".into())));
    }
}
