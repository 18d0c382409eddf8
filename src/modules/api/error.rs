//! The API's one error shape: `{"error": {"code", "message", "field"?}}` with the right status
//! (DESIGN.md section 8). An API error is an answer like any other: it never closes a
//! keep-alive connection and is never an HTML page.

use std::fmt;

use bytes::Bytes;

use crate::http::response::json_string;
use crate::http::Response;

/// Seconds a client is told to wait (`Retry-After`) when the database cannot answer.
pub const RETRY_AFTER_S: u32 = 5;

/// An API call that cannot be answered as asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: u16,
    /// Stable, machine-readable: `invalid`, `unauthorized`, `not_found`...
    pub code: &'static str,
    pub message: String,
    /// The request field at fault, on validation errors only.
    pub field: Option<String>,
}

impl ApiError {
    pub fn new(status: u16, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            field: None,
        }
    }

    /// 400: `field` of the request is wrong, and why.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> ApiError {
        ApiError {
            field: Some(field.into()),
            ..ApiError::new(400, "invalid", message)
        }
    }

    /// 400: the body is not the JSON the call takes.
    pub fn bad_json(message: impl Into<String>) -> ApiError {
        ApiError::new(400, "bad_json", message)
    }

    /// 401: no valid `Authorization: Bearer` token.
    pub fn unauthorized(message: impl Into<String>) -> ApiError {
        ApiError::new(401, "unauthorized", message)
    }

    /// 403: signed in, but not allowed to do this.
    pub fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError::new(403, "forbidden", message)
    }

    /// 404: `what` does not exist (or no longer does).
    pub fn not_found(what: impl fmt::Display) -> ApiError {
        ApiError::new(404, "not_found", format!("{what} does not exist"))
    }

    /// 405: the path exists, not with this method.
    pub fn method_not_allowed(method: &str, path: &str) -> ApiError {
        ApiError::new(
            405,
            "method_not_allowed",
            format!("{method} is not allowed on {path}"),
        )
    }

    /// 409: the request clashes with what exists (a device id taken, say).
    pub fn conflict(message: impl Into<String>) -> ApiError {
        ApiError::new(409, "conflict", message)
    }

    /// 413: the body is larger than the call takes.
    pub fn too_large(limit: usize) -> ApiError {
        ApiError::new(
            413,
            "too_large",
            format!("the request body is larger than {limit} bytes"),
        )
    }

    /// 503 with Retry-After: the database did not answer in time, or is unreachable.
    pub fn unavailable(message: impl Into<String>) -> ApiError {
        ApiError::new(503, "unavailable", message)
    }

    /// The response: JSON, keeping the connection, with `Retry-After` on 503.
    pub fn response(&self) -> Response {
        let mut body = format!(
            "{{\"error\":{{\"code\":{},\"message\":{}",
            json_string(self.code),
            json_string(&self.message)
        );
        if let Some(f) = &self.field {
            body.push_str(",\"field\":");
            body.push_str(&json_string(f));
        }
        body.push_str("}}\n");
        let mut r = Response::with_body(self.status, "application/json", Bytes::from(body));
        if self.status == 503 {
            r.header("Retry-After", RETRY_AFTER_S.to_string());
        }
        if self.status == 401 {
            r.header("WWW-Authenticate", "Bearer");
        }
        r
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.status, self.code, self.message)?;
        if let Some(field) = &self.field {
            write!(f, " (field {field})")?;
        }
        Ok(())
    }
}

impl std::error::Error for ApiError {}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(r: &Response) -> String {
        match &r.body {
            crate::http::response::Body::Bytes(b) => String::from_utf8(b.to_vec()).unwrap(),
            other => panic!("not a body in memory: {other:?}"),
        }
    }

    #[test]
    fn the_shape_names_the_field_only_on_validation_errors() {
        let r = ApiError::invalid("time_zone", "\"Mars/Base\" is no IANA time zone").response();
        assert_eq!(r.status, 400);
        assert_eq!(
            body(&r),
            "{\"error\":{\"code\":\"invalid\",\"message\":\"\\\"Mars/Base\\\" is no IANA time zone\",\"field\":\"time_zone\"}}\n"
        );
        let r = ApiError::not_found("hive 7").response();
        assert_eq!(
            body(&r),
            "{\"error\":{\"code\":\"not_found\",\"message\":\"hive 7 does not exist\"}}\n"
        );
    }

    #[test]
    fn unavailable_says_when_to_retry() {
        let r = ApiError::unavailable("the database did not answer in time").response();
        assert_eq!(r.status, 503);
        assert_eq!(r.get("Retry-After"), Some("5"));
    }
}
