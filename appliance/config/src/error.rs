//! Errors that tell the operator which key, where, and what is wrong.

use std::fmt;
use std::path::PathBuf;

/// Why the configuration could not be loaded. The [`Display`](fmt::Display)
/// text is a complete message meant for the operator, e.g.
/// `/etc/appliance/appliance.toml:3:11: retention.max_age: invalid duration
/// `forever`: expected number at 0`.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The configuration file could not be read.
    #[error("{}: cannot read: {source}", .path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML, has an unknown key, or a value that is
    /// invalid for its key.
    #[error("{origin}{}: {}{message}", at(.position), key_prefix(.key))]
    File {
        /// The file name, as given to the loader.
        origin: String,
        /// Where in the file; absent only when the TOML parser gave no span.
        position: Option<Position>,
        /// Dotted path of the offending key, e.g. `retention.max_age`;
        /// `None` when the error is not about a key (TOML syntax).
        key: Option<String>,
        message: String,
    },
    /// An `APPLIANCE_*` environment variable is not of the form
    /// `APPLIANCE_<SECTION>__<KEY>`, names an unknown key, or has an
    /// invalid value.
    #[error("environment {var}: {message}")]
    Env { var: String, message: String },
    /// A setting changed at run time ([`crate::Config::with_settings`]) is not one that may be
    /// changed, or has an invalid value.
    #[error("setting {key}: {message}")]
    Setting { key: String, message: String },
}

/// A 1-based line and column (in characters) in a configuration file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub line: usize,
    pub column: usize,
}

impl Position {
    /// The position of byte `offset` in `text`.
    fn of(text: &str, offset: usize) -> Position {
        // An offset past the end (spans may end at EOF) or inside a character
        // still yields the best position we can give: the end.
        let before = text.get(..offset).unwrap_or(text);
        let line_start = before.rfind('\n').map_or(0, |newline| newline + 1);
        Position {
            line: before.matches('\n').count() + 1,
            column: before[line_start..].chars().count() + 1,
        }
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

fn at(position: &Option<Position>) -> String {
    position.map_or_else(String::new, |position| format!(":{position}"))
}

fn key_prefix(key: &Option<String>) -> String {
    key.as_ref()
        .map_or_else(String::new, |key| format!("{key}: "))
}

impl ConfigError {
    /// An error in the file `origin` whose contents are `text`.
    pub(crate) fn in_file(
        origin: &str,
        text: &str,
        key: Option<String>,
        err: &toml::de::Error,
    ) -> ConfigError {
        ConfigError::File {
            origin: origin.to_owned(),
            position: err.span().map(|span| Position::of(text, span.start)),
            key,
            message: describe(err),
        }
    }

    /// An error caused by the environment variable `var`.
    pub(crate) fn in_env(var: &str, message: impl Into<String>) -> ConfigError {
        ConfigError::Env {
            var: var.to_owned(),
            message: message.into(),
        }
    }
}

/// The message of a TOML error without the source snippet the TOML crate's
/// own `Display` adds (we report the position ourselves).
pub(crate) fn describe(err: &toml::de::Error) -> String {
    // Syntax errors come as several lines ("invalid string\nexpected ...");
    // one line keeps the error readable in the journal.
    let message = err.message().trim_end().replace('\n', "; ");
    // serde speaks of struct "fields"; in a configuration file they are keys.
    match message.strip_prefix("unknown field") {
        Some(rest) => format!("unknown key{rest}"),
        None => message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn position_counts_lines_and_characters() {
        let text = "a = 1\n# é\nb = 2";
        assert_eq!(Position::of(text, 0), Position { line: 1, column: 1 });
        assert_eq!(Position::of(text, 4), Position { line: 1, column: 5 });
        assert_eq!(Position::of(text, 6), Position { line: 2, column: 1 });
        // `é` is two bytes but one column.
        assert_eq!(Position::of(text, 10), Position { line: 2, column: 4 });
        assert_eq!(Position::of(text, 11), Position { line: 3, column: 1 });
        assert_eq!(Position::of(text, 15), Position { line: 3, column: 5 });
        assert_eq!(Position::of(text, 99), Position { line: 3, column: 6 });
    }

    #[test]
    fn messages_are_complete() {
        let missing = ConfigError::Read {
            path: "/x.toml".into(),
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        };
        assert_eq!(
            missing.to_string(),
            "/x.toml: cannot read: entity not found"
        );
        let unplaced = ConfigError::File {
            origin: "/x.toml".into(),
            position: None,
            key: None,
            message: "broken".into(),
        };
        assert_eq!(unplaced.to_string(), "/x.toml: broken");
        let placed = ConfigError::File {
            origin: "/x.toml".into(),
            position: Some(Position {
                line: 3,
                column: 11,
            }),
            key: Some("retention.max_age".into()),
            message: "broken".into(),
        };
        assert_eq!(
            placed.to_string(),
            "/x.toml:3:11: retention.max_age: broken"
        );
    }
}
