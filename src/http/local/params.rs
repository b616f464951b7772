//! Query and path values shared by several routes, each checked in one
//! place with one error.

use axum::extract::rejection::QueryRejection;
use axum::http::StatusCode;

use crate::http::error::ApiError;

/// A query string that does not parse.
pub fn bad_query(e: QueryRejection) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "bad_query", e.body_text())
}

/// A page size: 1 to 1000, 100 when not given.
pub fn limit(given: Option<i64>) -> Result<i64, ApiError> {
    let limit = given.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_limit",
            "`limit` must be between 1 and 1000",
        ));
    }
    Ok(limit)
}

/// A message id from the path, in its canonical (hyphenated, lowercase) form.
pub fn message_id(text: &str) -> Result<String, ApiError> {
    uuid::Uuid::parse_str(text)
        .map(|u| u.to_string())
        .map_err(|_| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_message_id",
                "message id must be a UUID",
            )
        })
}

/// A numeric cursor (`after`): 0 (from the start) or a value a page returned.
pub fn cursor(given: Option<i64>) -> Result<i64, ApiError> {
    match given {
        None => Ok(0),
        Some(c) if c >= 0 => Ok(c),
        Some(_) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_cursor",
            "`after` must be a cursor returned by this feed",
        )),
    }
}
