//! The template environment of job scripts: every `{{ value }}` shell-quoted.

use minijinja::value::ValueKind;
use minijinja::{AutoEscape, Environment, UndefinedBehavior};

/// A template environment whose every `{{ value }}` is shell-quoted: strings and numbers as one
/// word, lists as one word per item. Undefined values are errors, not empty strings.
pub(super) fn shell_environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_keep_trailing_newline(true);
    env.set_auto_escape_callback(|_| AutoEscape::Custom("shell"));
    env.set_formatter(|out, _state, value| {
        let quote = |s: &str| {
            // Words of only these characters mean the same quoted or not (Python's shlex.quote
            // leaves the same set bare); they stay bare so the scripts read like hand-written.
            let bare = !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "@%+=:,./-_".contains(c));
            if bare {
                return Ok(s.to_string());
            }
            shlex::try_quote(s).map(|q| q.into_owned()).map_err(|e| {
                minijinja::Error::new(
                    minijinja::ErrorKind::InvalidOperation,
                    format!("cannot shell-quote {s:?}: {e}"),
                )
            })
        };
        let text = if value.is_safe() {
            value.to_string()
        } else if value.kind() == ValueKind::Seq {
            let items = value
                .try_iter()?
                .map(|item| quote(&item.to_string()))
                .collect::<Result<Vec<_>, _>>()?;
            items.join(" ")
        } else if value.is_none() || value.is_undefined() {
            return Err(minijinja::Error::new(
                minijinja::ErrorKind::UndefinedError,
                "a missing value cannot be written into a job script",
            ));
        } else {
            quote(&value.to_string())?
        };
        out.write_str(&text).map_err(minijinja::Error::from)
    });
    env
}
