//! Decoding request bodies and query strings into checked values, with an error that names
//! the field at fault. Unknown fields are ignored, as the seed's clients send extras.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use serde_json::{Map, Value};

use super::error::ApiError;
use crate::domain::{Id, Tags};

/// Longest `name`, `title`, `agentName`, `model`, `icon`, `type` and ids, in characters.
pub const MAX_NAME_CHARS: usize = 1_000;
/// Longest `description`, `output` and `error`, in bytes.
pub const MAX_TEXT_BYTES: usize = 256 * 1024;
/// Largest cost or budget. Sums of costs this size stay finite and exact to the cent.
pub const MAX_COST: f64 = 1e15;
/// Largest request body.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// A request body that is a JSON object (an empty body counts as `{}`).
pub struct JsonBody(pub Map<String, Value>);

impl<S: Send + Sync> FromRequest<S> for JsonBody {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(request, state).await.map_err(|rejection| {
            if timed_out(&rejection) {
                ApiError::new(StatusCode::REQUEST_TIMEOUT, "request_timeout", "the request body did not arrive in time")
            } else if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "payload_too_large",
                    format!("the request body is over the limit of {MAX_BODY_BYTES} bytes"),
                )
            } else {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "bad_body",
                    format!("could not read the request body: {rejection}"),
                )
            }
        })?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(JsonBody(Map::new()));
        }
        match serde_json::from_slice::<Value>(&bytes) {
            Ok(Value::Object(map)) => Ok(JsonBody(map)),
            Ok(_) => {
                Err(ApiError::new(StatusCode::BAD_REQUEST, "malformed_json", "the request body must be a JSON object"))
            }
            Err(e) => Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "malformed_json",
                format!("the request body is not valid JSON: {e}"),
            )),
        }
    }
}

/// Whether reading the body failed because the client was too slow.
fn timed_out(rejection: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(rejection);
    while let Some(error) = cause {
        if error.is::<tower_http::timeout::TimeoutError>() {
            return true;
        }
        cause = error.source();
    }
    false
}

/// Typed access to the fields of a JSON object. `null` counts as absent, except where a
/// `patch_*` accessor asks whether a field is being cleared.
pub struct Fields<'a>(pub &'a Map<String, Value>);

impl<'a> Fields<'a> {
    fn present(&self, name: &str) -> Option<&'a Value> {
        self.0.get(name).filter(|v| !v.is_null())
    }

    /// A string of at most `max_chars` characters.
    pub fn name(&self, field: &'static str) -> Result<Option<Arc<str>>, ApiError> {
        self.string(field, |s| s.chars().count() <= MAX_NAME_CHARS, || format!("at most {MAX_NAME_CHARS} characters"))
    }

    /// A name that, when given, is not blank.
    pub fn non_blank_name(&self, field: &'static str) -> Result<Option<Arc<str>>, ApiError> {
        match self.name(field)? {
            Some(s) if s.trim().is_empty() => Err(ApiError::invalid(field, format!("`{field}` must not be blank"))),
            other => Ok(other),
        }
    }

    /// A name that must be present and not blank.
    pub fn required_name(&self, field: &'static str) -> Result<Arc<str>, ApiError> {
        self.non_blank_name(field)?.ok_or_else(|| ApiError::missing(field))
    }

    /// A long text (description, output, error).
    pub fn text(&self, field: &'static str) -> Result<Option<Arc<str>>, ApiError> {
        self.string(field, |s| s.len() <= MAX_TEXT_BYTES, || format!("at most {MAX_TEXT_BYTES} bytes"))
    }

    /// An id: a non-blank string of at most `MAX_NAME_CHARS` characters.
    pub fn id(&self, field: &'static str) -> Result<Option<Id>, ApiError> {
        self.non_blank_name(field)
    }

    pub fn required_id(&self, field: &'static str) -> Result<Id, ApiError> {
        self.id(field)?.ok_or_else(|| ApiError::missing(field))
    }

    /// `None` when absent, `Some(None)` when `null` (clear it), else the text.
    pub fn patch_text(&self, field: &'static str) -> Result<Option<Option<Arc<str>>>, ApiError> {
        match self.0.get(field) {
            None => Ok(None),
            Some(Value::Null) => Ok(Some(None)),
            Some(_) => Ok(Some(self.text(field)?)),
        }
    }

    /// A number from 0 to `MAX_COST` (costs and budgets).
    pub fn cost(&self, field: &'static str) -> Result<Option<f64>, ApiError> {
        match self.present(field) {
            None => Ok(None),
            Some(Value::Number(n)) => match n.as_f64() {
                Some(x) if (0.0..=MAX_COST).contains(&x) => Ok(Some(x)),
                _ => Err(ApiError::invalid(field, format!("`{field}` must be a number from 0 to {MAX_COST:e}"))),
            },
            Some(_) => Err(wrong_type(field, "a number")),
        }
    }

    pub fn patch_cost(&self, field: &'static str) -> Result<Option<Option<f64>>, ApiError> {
        match self.0.get(field) {
            None => Ok(None),
            Some(Value::Null) => Ok(Some(None)),
            Some(_) => Ok(Some(self.cost(field)?)),
        }
    }

    /// A whole number in `min..=max`.
    pub fn integer(&self, field: &'static str, min: u64, max: u64) -> Result<Option<u64>, ApiError> {
        let Some(value) = self.present(field) else { return Ok(None) };
        let Value::Number(n) = value else { return Err(wrong_type(field, "a whole number")) };
        let whole = n
            .as_u64()
            .map(i128::from)
            .or_else(|| n.as_i64().map(i128::from))
            .or_else(|| n.as_f64().filter(|x| x.fract() == 0.0 && x.abs() < 1e30).map(|x| x as i128));
        match whole {
            None => Err(wrong_type(field, "a whole number")),
            Some(x) if x >= i128::from(min) && x <= i128::from(max) => Ok(Some(x as u64)),
            Some(_) => Err(ApiError::invalid(field, format!("`{field}` must be between {min} and {max}"))),
        }
    }

    pub fn u32_in(&self, field: &'static str, min: u32, max: u32) -> Result<Option<u32>, ApiError> {
        Ok(self.integer(field, u64::from(min), u64::from(max))?.map(|x| x as u32))
    }

    /// One of an enum's names.
    pub fn one_of<T>(
        &self,
        field: &'static str,
        parse: fn(&str) -> Option<T>,
        names: &[&str],
    ) -> Result<Option<T>, ApiError> {
        match self.present(field) {
            None => Ok(None),
            Some(Value::String(s)) => parse(s).map(Some).ok_or_else(|| {
                ApiError::invalid(field, format!("`{field}` must be one of {}; got `{s}`", names.join(", ")))
            }),
            Some(_) => Err(wrong_type(field, "a string")),
        }
    }

    /// Tags: an array of strings, or a string holding one as JSON (the seed's storage form).
    /// `None` when absent, `Some(None)` when `null`.
    pub fn tags(&self, field: &'static str) -> Result<Option<Option<Tags>>, ApiError> {
        let list = match self.0.get(field) {
            None => return Ok(None),
            Some(Value::Null) => return Ok(Some(None)),
            Some(Value::String(text)) => match serde_json::from_str::<Value>(text) {
                Ok(Value::Array(items)) => items,
                _ => {
                    return Err(ApiError::invalid(
                        field,
                        format!("`{field}` must be an array of strings, or a string holding one as JSON"),
                    ))
                }
            },
            Some(Value::Array(items)) => items.clone(),
            Some(_) => return Err(wrong_type(field, "an array of strings")),
        };
        parse_tag_list(field, &list).map(|tags| Some(Some(tags)))
    }

    fn string(
        &self,
        field: &'static str,
        within_limit: impl Fn(&str) -> bool,
        limit: impl Fn() -> String,
    ) -> Result<Option<Arc<str>>, ApiError> {
        match self.present(field) {
            None => Ok(None),
            Some(Value::String(s)) if within_limit(s) => Ok(Some(s.as_str().into())),
            Some(Value::String(_)) => Err(ApiError::invalid(field, format!("`{field}` is too long: {}", limit()))),
            Some(_) => Err(wrong_type(field, "a string")),
        }
    }
}

fn parse_tag_list(field: &'static str, items: &[Value]) -> Result<Tags, ApiError> {
    items
        .iter()
        .map(|item| match item {
            Value::String(s) if s.chars().count() <= MAX_NAME_CHARS => Ok(Arc::from(s.as_str())),
            Value::String(_) => {
                Err(ApiError::invalid(field, format!("each tag is at most {MAX_NAME_CHARS} characters")))
            }
            _ => Err(ApiError::invalid(field, format!("`{field}` must hold only strings"))),
        })
        .collect()
}

fn wrong_type(field: &'static str, expected: &str) -> ApiError {
    ApiError::invalid(field, format!("`{field}` must be {expected}"))
}

/// The pairs of a query string, decoded.
pub struct Query(pub Vec<(String, String)>);

impl Query {
    pub fn parse(raw: Option<&str>) -> Result<Query, ApiError> {
        let raw = raw.unwrap_or_default();
        serde_urlencoded::from_str::<Vec<(String, String)>>(raw).map(Query).map_err(|e| {
            ApiError::new(StatusCode::BAD_REQUEST, "bad_query", format!("the query string is malformed: {e}"))
        })
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    pub fn id(&self, field: &'static str) -> Result<Option<Id>, ApiError> {
        match self.get(field) {
            None => Ok(None),
            Some(v) if v.is_empty() || v.chars().count() > MAX_NAME_CHARS => {
                Err(ApiError::invalid(field, format!("`{field}` must be 1 to {MAX_NAME_CHARS} characters")))
            }
            Some(v) => Ok(Some(v.into())),
        }
    }

    pub fn one_of<T>(
        &self,
        field: &'static str,
        parse: fn(&str) -> Option<T>,
        names: &[&str],
    ) -> Result<Option<T>, ApiError> {
        match self.get(field) {
            None => Ok(None),
            Some(v) => parse(v).map(Some).ok_or_else(|| {
                ApiError::invalid(field, format!("`{field}` must be one of {}; got `{v}`", names.join(", ")))
            }),
        }
    }

    pub fn integer(&self, field: &'static str, min: u64, max: u64) -> Result<Option<u64>, ApiError> {
        match self.get(field) {
            None => Ok(None),
            Some(v) => match v.parse::<u64>() {
                Ok(x) if (min..=max).contains(&x) => Ok(Some(x)),
                _ => Err(ApiError::invalid(field, format!("`{field}` must be a whole number from {min} to {max}"))),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fields(value: Value) -> Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    #[test]
    fn strings_are_checked_for_type_and_length() {
        let map = fields(json!({"title": "ok", "n": 5, "long": "x".repeat(MAX_NAME_CHARS + 1), "blank": "  "}));
        let f = Fields(&map);
        assert_eq!(f.required_name("title").unwrap().as_ref(), "ok");
        assert_eq!(f.required_name("n").unwrap_err().field, Some("n"));
        assert_eq!(f.required_name("missing").unwrap_err().code, "missing_field");
        assert!(f.name("long").is_err());
        assert!(f.required_name("blank").is_err());
    }

    #[test]
    fn numbers_are_never_clamped() {
        let map = fields(json!({"neg": -1, "frac": 1.5, "big": 40000, "ok": 3, "okf": 3.0, "s": "3"}));
        let f = Fields(&map);
        assert!(f.cost("neg").is_err());
        assert_eq!(f.cost("frac").unwrap(), Some(1.5));
        assert!(f.integer("frac", 0, 10).is_err());
        assert!(f.integer("big", 0, 30_000).is_err());
        assert!(f.integer("neg", 0, 30_000).is_err());
        assert_eq!(f.integer("ok", 0, 10).unwrap(), Some(3));
        assert_eq!(f.integer("okf", 0, 10).unwrap(), Some(3));
        assert!(f.integer("s", 0, 10).is_err());
    }

    #[test]
    fn tags_take_an_array_or_its_json_string() {
        let map = fields(json!({"a": ["x", "y"], "s": "[\"x\"]", "bad": "x", "num": [1], "null": null}));
        let f = Fields(&map);
        assert_eq!(f.tags("a").unwrap().unwrap().unwrap().len(), 2);
        assert_eq!(f.tags("s").unwrap().unwrap().unwrap()[0].as_ref(), "x");
        assert!(f.tags("bad").is_err());
        assert!(f.tags("num").is_err());
        assert_eq!(f.tags("null").unwrap(), Some(None));
        assert_eq!(f.tags("absent").unwrap(), None);
    }
}
