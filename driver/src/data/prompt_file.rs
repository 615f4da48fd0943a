//! The prompt file format (`data/prompts_2k.txt`, `data/prompts_4k.txt`; documented in
//! `data/README.md`): `#` comment lines at the top, then one block per prompt, opened by a header
//! line `=== ID ===` and running to the next header. Blank lines around a prompt are not part of it.

use std::fmt::Write as _;

/// One prompt as read from a file, with the line of its header (1-based).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilePrompt {
    pub id: String,
    pub text: String,
    pub line: usize,
}

/// A line the parser could not make sense of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormatIssue {
    pub line: usize,
    pub message: String,
}

/// What a file holds: its prompts in order, the problems found, and its number of lines.
#[derive(Debug, Clone, Default)]
pub struct ParsedFile {
    pub prompts: Vec<FilePrompt>,
    pub issues: Vec<FormatIssue>,
    pub lines: usize,
}

/// Parses the text of a prompt file. Never fails: problems are returned with their line.
pub fn parse(text: &str) -> ParsedFile {
    let mut parsed = ParsedFile::default();
    let mut current: Option<(String, usize, Vec<&str>)> = None;
    // After a malformed header, its body is skipped rather than reported line by line.
    let mut skipping = false;
    for (index, raw) in text.split('\n').enumerate() {
        let number = index + 1;
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        parsed.lines = number;
        if line.starts_with("===") {
            if let Some(done) = current.take() {
                parsed.prompts.push(finish(done));
            }
            skipping = false;
            match header_id(line) {
                Some(id) => current = Some((id.to_string(), number, Vec::new())),
                None => {
                    skipping = true;
                    parsed.issues.push(FormatIssue {
                        line: number,
                        message: format!("malformed header `{line}`: expected `=== ID ===`"),
                    })
                }
            }
            continue;
        }
        match &mut current {
            Some((_, _, body)) => body.push(line),
            None if skipping || line.trim().is_empty() || line.starts_with('#') => {}
            None => parsed.issues.push(FormatIssue {
                line: number,
                message: "text before the first `=== ID ===` header".to_string(),
            }),
        }
    }
    if let Some(done) = current.take() {
        parsed.prompts.push(finish(done));
    }
    // A file ending in a newline has an empty last "line" after it; it is not a line of its own.
    if text.ends_with('\n') {
        parsed.lines -= 1;
    }
    parsed
}

fn header_id(line: &str) -> Option<&str> {
    let id = line.strip_prefix("=== ")?.strip_suffix(" ===")?.trim();
    let valid = !id.is_empty()
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    valid.then_some(id)
}

fn finish((id, line, body): (String, usize, Vec<&str>)) -> FilePrompt {
    let start = body.iter().position(|l| !l.trim().is_empty());
    let end = body.iter().rposition(|l| !l.trim().is_empty());
    let text = match (start, end) {
        (Some(s), Some(e)) => body[s..=e].join("\n"),
        _ => String::new(),
    };
    FilePrompt { id, text, line }
}

/// Writes a prompt file: the comment lines, then each prompt under its header, a blank line between.
pub fn format(comments: &[String], prompts: &[(String, String)]) -> String {
    let mut out = String::new();
    for comment in comments {
        let _ = writeln!(out, "# {comment}");
    }
    for (id, text) in prompts {
        let _ = write!(out, "\n=== {id} ===\n{text}\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_and_parse_round_trip_with_lines() {
        let prompts = vec![
            (
                "p01".to_string(),
                "first line\n\n# not a comment here\nlast".to_string(),
            ),
            ("p02".to_string(), "x".to_string()),
        ];
        let text = format(&["a set".to_string()], &prompts);
        let parsed = parse(&text);
        assert!(parsed.issues.is_empty(), "{:?}", parsed.issues);
        let got: Vec<_> = parsed
            .prompts
            .iter()
            .map(|p| (p.id.clone(), p.text.clone()))
            .collect();
        assert_eq!(got, prompts);
        assert_eq!(parsed.prompts[0].line, 3);
        assert_eq!(parsed.prompts[1].line, 9);
        assert_eq!(parsed.lines, 10);
    }

    #[test]
    fn stray_text_and_bad_headers_are_reported_with_their_line() {
        let parsed = parse("# ok\nstray\n=== p 1 ===\nbody\n=== p2 ===\n\n  \n");
        let lines: Vec<_> = parsed.issues.iter().map(|i| i.line).collect();
        assert_eq!(lines, [2, 3]);
        assert_eq!(parsed.prompts.len(), 1);
        assert_eq!(parsed.prompts[0].id, "p2");
        assert_eq!(parsed.prompts[0].text, "");
    }

    #[test]
    fn crlf_files_parse_like_lf_files() {
        let parsed = parse("=== a ===\r\nline one\r\nline two\r\n");
        assert_eq!(parsed.prompts[0].text, "line one\nline two");
    }
}
