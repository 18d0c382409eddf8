//! The HTTP layer's error: mapped once to a status and a close decision.

use crate::http::parse::ParseError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpError {
    /// The request is malformed: 400 and close.
    BadRequest {
        field: &'static str,
        why: &'static str,
    },
    /// A status from the parser or a limit (400, 408, 413, 414, 417, 431, 501, 505): close.
    Status { status: u16, why: &'static str },
    /// 503 with Retry-After.
    Unavailable { retry_after: u32 },
    /// 500; logged at error level.
    Internal(String),
}

impl HttpError {
    pub fn status(&self) -> u16 {
        match self {
            HttpError::BadRequest { .. } => 400,
            HttpError::Status { status, .. } => *status,
            HttpError::Unavailable { .. } => 503,
            HttpError::Internal(_) => 500,
        }
    }

    /// Whether the connection must close after the answer: framing may be lost.
    pub fn closes(&self) -> bool {
        matches!(
            self,
            HttpError::BadRequest { .. } | HttpError::Status { .. }
        )
    }

    pub fn reason(&self) -> String {
        match self {
            HttpError::BadRequest { field, why } => format!("{field}: {why}"),
            HttpError::Status { why, .. } => (*why).to_string(),
            HttpError::Unavailable { .. } => "unavailable".to_string(),
            HttpError::Internal(s) => s.clone(),
        }
    }
}

impl From<ParseError> for HttpError {
    fn from(e: ParseError) -> Self {
        HttpError::Status {
            status: e.status,
            why: e.reason,
        }
    }
}

impl std::fmt::Display for HttpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.status(), self.reason())
    }
}
