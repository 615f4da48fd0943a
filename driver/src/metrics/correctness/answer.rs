//! Answer correctness: does a completion state the expected answer of `data/answers.json`?
//!
//! Checked for the baseline and for every strategy alike: the baseline may be wrong too, so this
//! is reported as accuracy beside the agreement scores, not folded into them.

use crate::data::answers::Answer;

/// The verdict on one completion.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AnswerCheck {
    /// The completion states the answer (for points: every point).
    pub correct: bool,
    /// For a points answer, the share of points found, 0..=1; `None` for other answers.
    pub points_share: Option<f64>,
}

/// Checks `completion` against `answer`:
/// - `Number`: the completion contains the number as a standalone integer (see
///   [`standalone_integers`]); any of its numbers may be the one, so the position of the answer
///   in a longer explanation does not matter.
/// - `Text`: the text is a substring of the completion, both lowercased and without whitespace.
/// - `Points`: each point's value is found the same way as a text; correct when all are found.
pub fn check_answer(answer: &Answer, completion: &str) -> AnswerCheck {
    match answer {
        Answer::Number(number) => AnswerCheck {
            correct: standalone_integers(completion).contains(number),
            points_share: None,
        },
        Answer::Text(text) => AnswerCheck {
            correct: squash(completion).contains(&squash(text)),
            points_share: None,
        },
        Answer::Points(points) => {
            let completion = squash(completion);
            let found = points
                .values()
                .filter(|value| completion.contains(&squash(value)))
                .count();
            AnswerCheck {
                correct: found == points.len(),
                // No points to find: vacuously all found.
                points_share: Some(if points.is_empty() {
                    1.0
                } else {
                    found as f64 / points.len() as f64
                }),
            }
        }
    }
}

/// Lowercased, with every whitespace character removed.
fn squash(text: &str) -> String {
    text.chars()
        .filter(|c| !c.is_whitespace())
        .flat_map(char::to_lowercase)
        .collect()
}

/// The integers written in `text`. A number is a run of ASCII digits, optionally with commas
/// between groups of exactly three digits (`1,826`), optionally negative (`-5`, where the `-`
/// does not follow a letter or digit). It is standalone when it is not glued to a word or to
/// another number: not preceded by a letter, digit, `_`, a `-` attached to a word (`QX-2409`) or a
/// decimal point (`3.5`), and not followed by a letter, digit, `_` or a decimal part (`.5`). A
/// sentence's final period (`is 347.`) does not make a decimal.
pub fn standalone_integers(text: &str) -> Vec<i64> {
    let chars: Vec<char> = text.chars().collect();
    let at = |i: usize| chars.get(i).copied();
    let word = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
    let digit = |c: Option<char>| c.is_some_and(|c| c.is_ascii_digit());
    let mut numbers = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        if !chars[i].is_ascii_digit() {
            i += 1;
            continue;
        }
        let start = i;
        while digit(at(i)) {
            i += 1;
        }
        let mut digits: String = chars[start..i].iter().collect();
        if i - start <= 3 {
            while at(i) == Some(',') && (1..=3).all(|k| digit(at(i + k))) && !digit(at(i + 4)) {
                digits.extend(&chars[i + 1..i + 4]);
                i += 4;
            }
        }
        let before = start.checked_sub(1).and_then(at);
        let before_before = start.checked_sub(2).and_then(at);
        let negative = before == Some('-') && !word(before_before);
        let glued_before = word(before)
            || (before == Some('-') && word(before_before))
            || (before == Some('.') && digit(before_before));
        let glued_after = word(at(i)) || (at(i) == Some('.') && digit(at(i + 1)));
        if glued_before || glued_after {
            continue;
        }
        if let Ok(value) = digits.parse::<i64>() {
            numbers.push(if negative { -value } else { value });
        }
    }
    numbers
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn integers_with_separators_signs_and_sentence_ends() {
        assert_eq!(
            standalone_integers("Total: 1,826 units, 7,9 and -5; it is 347."),
            vec![1826, 7, 9, -5, 347]
        );
    }

    #[test]
    fn numbers_glued_to_words_or_decimals_are_not_standalone() {
        assert_eq!(
            standalone_integers("QX-2409 p07 42nd 3.5 x_1 v2"),
            Vec::<i64>::new()
        );
        // A digit run that is not a valid thousands group stays two numbers.
        assert_eq!(standalone_integers("1,8260"), vec![1, 8260]);
    }

    #[test]
    fn a_number_answer_is_found_anywhere_in_the_completion() {
        let answer = Answer::Number(3823);
        assert!(check_answer(&answer, "Adding them up gives 3,823.").correct);
        assert!(check_answer(&answer, "3823").correct);
        assert!(!check_answer(&answer, "The total is 38230.").correct);
        assert!(!check_answer(&answer, "The total is 3823.5").correct);
        assert_eq!(check_answer(&answer, "3823").points_share, None);
    }

    #[test]
    fn a_text_answer_ignores_case_and_whitespace() {
        let answer = Answer::Text("Chloe Nakamura".into());
        assert!(check_answer(&answer, "The owner is CHLOE  nakamura.").correct);
        assert!(check_answer(&answer, "chloenakamura").correct);
        assert!(!check_answer(&answer, "Chloe Nakamoto").correct);
    }

    #[test]
    fn points_report_the_share_found() {
        let points: BTreeMap<String, String> = [
            ("Owner", "Noor Iyer"),
            ("Duration", "47 minutes"),
            ("Affected service", "inventory"),
            ("Root cause", "a missing index"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let answer = Answer::Points(points);
        // 3 of the 4 values appear (not "a missing index"): share 3/4 = 0.75, not correct.
        let check = check_answer(
            &answer,
            "Owner: noor iyer. Duration: 47 Minutes. Service: Inventory. Cause: a bad deploy.",
        );
        assert_eq!(check.points_share, Some(0.75));
        assert!(!check.correct);
        let all = check_answer(
            &answer,
            "Noor Iyer; 47 minutes; inventory; a missing index after a migration",
        );
        assert_eq!(all.points_share, Some(1.0));
        assert!(all.correct);
    }
}
