//! The libraries the recognition skills match against: enrolled faces ([`face`]) and licence
//! plate lists ([`plate`]).
//!
//! Both are plain in-memory data: the store persists the serde types defined here and rebuilds
//! the lookup structures at start-up, the vision pipeline hands in an embedding or an OCR read,
//! and the time of the observation is passed in rather than read from a clock, so that replays
//! and tests give the same answers as live operation.
//!
//! Everything an operator or an API client enters is checked by a `validate`/constructor that
//! returns a [`ValidationError`] naming the offending field by its path (`people[1].id`,
//! `entries[2].valid_until`), so a form can put the message next to the right input.

pub mod face;
pub mod plate;

/// Longest display name (library, list, person), in characters. Long enough for any real
/// name, short enough to fit on an event card and in a log line.
pub const MAX_NAME_CHARS: usize = 128;
/// Longest id (person, photo), in characters.
pub const MAX_ID_CHARS: usize = 64;
/// Longest free-text note, in characters.
pub const MAX_NOTE_CHARS: usize = 1024;

/// A value that breaks a rule of the library, with the path of the field it sits in. The
/// [`Display`](std::fmt::Display) text is the complete message, e.g.
/// `entries[2].valid_until: is before valid_from (1700000000 < 1700003600)`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ValidationError {
    /// Dotted path of the field, with list positions in brackets (0-based).
    pub field: String,
    /// What is wrong with it, for a person to read.
    pub message: String,
}

impl ValidationError {
    pub(crate) fn new(field: impl Into<String>, message: impl Into<String>) -> ValidationError {
        ValidationError {
            field: field.into(),
            message: message.into(),
        }
    }

    /// The same error seen from an enclosing value: `prefix` goes in front of the field path.
    pub(crate) fn within(self, prefix: &str) -> ValidationError {
        ValidationError {
            field: format!("{prefix}.{}", self.field),
            message: self.message,
        }
    }
}

/// A display name: not blank, at most [`MAX_NAME_CHARS`], no control characters (they would
/// break log lines, event cards and CSV exports).
fn validate_name(field: &str, value: &str) -> Result<(), ValidationError> {
    validate_text(field, value, MAX_NAME_CHARS, false)?;
    if value.trim().is_empty() {
        return Err(ValidationError::new(field, "must not be empty"));
    }
    Ok(())
}

/// A free-text note: at most [`MAX_NOTE_CHARS`]; line breaks and tabs are allowed (a note may
/// be a few lines), other control characters are not.
fn validate_note(field: &str, value: &str) -> Result<(), ValidationError> {
    validate_text(field, value, MAX_NOTE_CHARS, true)
}

fn validate_text(
    field: &str,
    value: &str,
    max_chars: usize,
    allow_breaks: bool,
) -> Result<(), ValidationError> {
    let chars = value.chars().count();
    if chars > max_chars {
        return Err(ValidationError::new(
            field,
            format!("is {chars} characters long, at most {max_chars} are allowed"),
        ));
    }
    let allowed = |c: char| allow_breaks && matches!(c, '\n' | '\r' | '\t');
    if let Some(c) = value.chars().find(|&c| c.is_control() && !allowed(c)) {
        return Err(ValidationError::new(
            field,
            format!("contains the control character {c:?}"),
        ));
    }
    Ok(())
}

/// An id: 1 to [`MAX_ID_CHARS`] ASCII letters, digits, `-`, `_` or `.`. Ids end up in URLs,
/// store keys and event payloads, so they are kept to characters that need no escaping anywhere
/// (a UUID or a badge number fits).
fn validate_id(field: &str, value: &str) -> Result<(), ValidationError> {
    if value.is_empty() {
        return Err(ValidationError::new(field, "must not be empty"));
    }
    let chars = value.chars().count();
    if chars > MAX_ID_CHARS {
        return Err(ValidationError::new(
            field,
            format!("is {chars} characters long, at most {MAX_ID_CHARS} are allowed"),
        ));
    }
    if let Some(c) = value
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        return Err(ValidationError::new(
            field,
            format!("contains {c:?}; only ASCII letters, digits, '-', '_' and '.' are allowed"),
        ));
    }
    Ok(())
}
