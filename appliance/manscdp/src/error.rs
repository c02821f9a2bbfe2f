//! Why a body could not be decoded.

/// A MANSCDP body that could not be decoded. Every variant names what was wrong so that the
/// log line alone lets someone find the fault in a device's output.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManscdpError {
    /// The bytes are not well-formed XML (unclosed or mismatched tags, bad escapes, truncation).
    #[error("malformed XML: {0}")]
    Xml(String),
    /// The XML declaration names an encoding other than UTF-8, GB2312, GBK or GB18030.
    #[error("unsupported XML encoding {0:?}")]
    UnsupportedEncoding(String),
    /// The document's root is not `Query`, `Control`, `Notify` or `Response`.
    #[error("root element <{0}> is not Query, Control, Notify or Response")]
    UnknownRoot(String),
    /// A required element is absent; `element` is its path below the root, e.g. `SN` or
    /// `DeviceList/Item/DeviceID`.
    #[error("required element <{element}> is missing")]
    Missing { element: String },
    /// A required element is present but its text is unusable.
    #[error("element <{element}> has invalid value {value:?}: {reason}")]
    Invalid {
        element: String,
        value: String,
        reason: String,
    },
}

impl ManscdpError {
    pub(crate) fn missing(element: &str) -> Self {
        Self::Missing {
            element: element.to_owned(),
        }
    }

    pub(crate) fn invalid(element: &str, value: &str, reason: impl ToString) -> Self {
        Self::Invalid {
            element: element.to_owned(),
            value: value.to_owned(),
            reason: reason.to_string(),
        }
    }
}
