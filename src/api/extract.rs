//! Extractors: how a request becomes typed values, or our `ApiError`.
//!
//! `AppJson<T>` decodes a body and `AppQuery<T>` a query string into a request type whose
//! fields carry their own rules (`fields`). The type's fields are decoded one by one in the
//! order it declares them (`InDeclaredOrder`), which also names the field at fault, at no
//! cost: tracking serde's path (`serde_path_to_error`) made a refused request 25% slower.
//! `PathId`, `Target<T>` and `TargetId` find the record a request is about, in the path or,
//! in the seed's style, in `?id=` or the body. A key the request type does not declare is
//! refused (400 `unknown_field`), unless it is a name of the resource's own shape that the
//! type lists in `Accepts::ALSO`: a client may send back what it read.

use std::borrow::Cow;
use std::cell::Cell;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, MatchedPath, Path, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use serde::de::{self, DeserializeOwned, DeserializeSeed, IntoDeserializer, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::Value;
use utoipa::openapi::path::{Parameter, ParameterBuilder, ParameterIn};
use utoipa::openapi::schema::{AllOfBuilder, ObjectBuilder, OneOfBuilder, Schema, Type};
use utoipa::openapi::{Ref, RefOr, Required};
use utoipa::{IntoParams, PartialSchema, ToSchema};

use super::error::ApiError;
use super::fields::{NonBlank, QueryId, MAX_NAME_CHARS, REQUIRED};
use crate::domain::Id;

/// Largest request body.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// Which keys a request type takes besides the fields it declares: names of the resource's
/// own shape (`wire::TASK_FIELDS`, ...) that a client cannot set but may send back as it read
/// them. They are accepted and ignored; any other undeclared key is a 400 `unknown_field`.
pub trait Accepts {
    const ALSO: &'static [&'static str] = &[];
}

/// A JSON object body decoded into `T`. An empty body counts as `{}`.
pub struct AppJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Accepts> FromRequest<S> for AppJson<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        no_query(request.uri().query())?;
        let body = read_object(request, state).await?;
        decode_body(&body).map(AppJson)
    }
}

/// For a route that reads nothing of the request: a query parameter is a 400 `unknown_field`.
pub struct NoQuery;

impl<S: Send + Sync> FromRequestParts<S> for NoQuery {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        no_query(parts.uri.query()).map(|()| NoQuery)
    }
}

/// A route that takes no query parameter: any is a 400 `unknown_field`.
fn no_query(raw: Option<&str>) -> Result<(), ApiError> {
    #[derive(Deserialize)]
    struct NoQuery {}
    impl Accepts for NoQuery {}
    decode_query::<NoQuery>(raw).map(|_| ())
}

/// A query string decoded into `T`. A repeated key counts once, with its last value.
pub struct AppQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Accepts> FromRequestParts<S> for AppQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        decode_query(parts.uri.query()).map(AppQuery)
    }
}

/// An id from the path, with our JSON error when it cannot be decoded.
pub struct PathId(pub Id);

impl<S: Send + Sync> FromRequestParts<S> for PathId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        no_query(parts.uri.query())?;
        let Path(id) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::invalid("id", format!("the id in the path is malformed: {e}")))?;
        if id.chars().count() > MAX_NAME_CHARS {
            return Err(ApiError::invalid("id", format!("`id` is at most {MAX_NAME_CHARS} characters")));
        }
        Ok(PathId(id.into()))
    }
}

impl IntoParams for PathId {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        vec![id_parameter(ParameterIn::Path)]
    }
}

/// The `id` parameter of `/api/<collection>/{id}` (`Path`) or of the seed's style (`Query`).
pub fn id_parameter(place: ParameterIn) -> Parameter {
    let (required, description) = match place {
        ParameterIn::Path => (Required::True, "The record's id (at most 1,000 characters)."),
        _ => (
            Required::False,
            "The record's id; when absent, `id` in the body names it (400 `missing_field` if neither).",
        ),
    };
    ParameterBuilder::new()
        .name("id")
        .parameter_in(place)
        .required(required)
        .description(Some(description))
        .schema(Some(QueryId::schema()))
        .build()
}

/// A body decoded into `T`, and the client-chosen `id` it may carry (an upsert).
pub struct WithId<T> {
    pub id: Option<Id>,
    pub fields: T,
}

impl<S: Send + Sync, T: DeserializeOwned + Accepts> FromRequest<S> for WithId<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        no_query(request.uri().query())?;
        let body = read_object(request, state).await?;
        let id = body_id(&body)?;
        Ok(WithId { id, fields: decode_body_with_id(&body)? })
    }
}

impl<T: ToSchema> PartialSchema for WithId<T> {
    fn schema() -> RefOr<Schema> {
        let id = OneOfBuilder::new()
            .item(ObjectBuilder::new().schema_type(Type::Null))
            .item(Ref::from_schema_name(NonBlank::name()))
            .description(Some("The record's id. Generated (a ULID) when absent."));
        let id = ObjectBuilder::new().property("id", id);
        AllOfBuilder::new().item(Ref::from_schema_name(T::name())).item(id).into()
    }
}

impl<T: ToSchema> ToSchema for WithId<T> {
    fn name() -> Cow<'static, str> {
        Cow::Owned(format!("{}WithId", T::name()))
    }

    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        schemas.push((T::name().into_owned(), T::schema()));
        T::schemas(schemas);
    }
}

/// `id` in a body, the other keys left to the request type.
fn body_id(body: &Value) -> Result<Option<Id>, ApiError> {
    #[derive(Deserialize)]
    struct InBody {
        id: Option<NonBlank>,
    }
    Ok(decode_with::<InBody>(body, None)?.id.map(|NonBlank(id)| id))
}

/// A body whose `id` the extractor reads itself.
fn decode_body_with_id<T: DeserializeOwned + Accepts>(body: &Value) -> Result<T, ApiError> {
    decode_with(body, Some(&[T::ALSO, &["id"]]))
}

/// The record a `PATCH` names, and the fields to change: the id is `{id}` in the path or,
/// in the seed's style, `?id=`, else `id` in the body (`?id=` wins).
pub struct Target<T> {
    pub id: Id,
    pub fields: T,
}

impl<S: Send + Sync, T: DeserializeOwned + Accepts> FromRequest<S> for Target<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let (mut parts, body) = request.into_parts();
        if names_id_in_path(&parts) {
            let PathId(id) = PathId::from_request_parts(&mut parts, state).await?;
            let AppJson(fields) = AppJson::from_request(Request::from_parts(parts, body), state).await?;
            return Ok(Target { id, fields });
        }
        let (id, body) = seed_style(Request::from_parts(parts, body), state).await?;
        Ok(Target { id, fields: decode_body_with_id(&body)? })
    }
}

/// The record a `DELETE` names, as for `Target`. In the path style the body is not read.
pub struct TargetId(pub Id);

impl<S: Send + Sync> FromRequest<S> for TargetId {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let (mut parts, body) = request.into_parts();
        if names_id_in_path(&parts) {
            return PathId::from_request_parts(&mut parts, state).await.map(|PathId(id)| TargetId(id));
        }
        seed_style(Request::from_parts(parts, body), state).await.map(|(id, _)| TargetId(id))
    }
}

fn names_id_in_path(parts: &Parts) -> bool {
    parts.extensions.get::<MatchedPath>().is_some_and(|path| path.as_str().ends_with("/{id}"))
}

/// The seed's style: the body (read first, as it must be a JSON object either way), and the
/// id from `?id=` or else from the body.
async fn seed_style<S: Send + Sync>(request: Request, state: &S) -> Result<(Id, Value), ApiError> {
    #[derive(Deserialize)]
    struct InQuery {
        id: Option<QueryId>,
    }
    impl Accepts for InQuery {}
    let query = request.uri().query().map(str::to_owned);
    let body = read_object(request, state).await?;
    if let Some(QueryId(id)) = decode_query::<InQuery>(query.as_deref())?.id {
        return Ok((id, body));
    }
    match body_id(&body)? {
        Some(id) => Ok((id, body)),
        None => Err(ApiError::missing("id")),
    }
}

/// Reads the body as a JSON object; an empty body counts as `{}`.
async fn read_object<S: Send + Sync>(request: Request, state: &S) -> Result<Value, ApiError> {
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
            ApiError::new(StatusCode::BAD_REQUEST, "bad_body", format!("could not read the request body: {rejection}"))
        }
    })?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Object(Default::default()));
    }
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(object @ Value::Object(_)) => Ok(object),
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

/// Decodes a JSON object (already parsed, so a syntax error is told apart from a field's).
fn decode_body<T: DeserializeOwned + Accepts>(body: &Value) -> Result<T, ApiError> {
    decode_with(body, Some(&[T::ALSO]))
}

/// Decodes a JSON object; with `also`, a key that is neither declared nor in `also` is
/// refused, without `also` (a look-up of one field) it is ignored.
fn decode_with<T: DeserializeOwned>(body: &Value, also: Option<&[&[&str]]>) -> Result<T, ApiError> {
    let field = Cell::new("");
    let unknown = Cell::new(None);
    let decoded = T::deserialize(InDeclaredOrder { body, field: &field, also, unknown: &unknown });
    if let Some(key) = unknown.get() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "unknown_field",
            format!("`{key}` is not a field of this request"),
        )
        .with_field(key.to_owned()));
    }
    decoded.map_err(|error| refusal(field.get(), &error))
}

/// A JSON object shown to a request type field by field, in the order the type declares
/// them and absent ones included, so that of several broken rules the one reported is the
/// first in that order (a missing `title` before a bad `priority`), whatever order the
/// client wrote the keys in. A key the type does not declare is refused first, unless in
/// `also` (or `also` is `None`).
struct InDeclaredOrder<'a> {
    body: &'a Value,
    /// The field being decoded: the one at fault when decoding fails.
    field: &'a Cell<&'static str>,
    also: Option<&'a [&'a [&'a str]]>,
    /// The first key that is neither declared nor in `also`.
    unknown: &'a Cell<Option<&'a str>>,
}

impl<'de> Deserializer<'de> for InDeclaredOrder<'de> {
    type Error = serde_json::Error;

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        match self.body {
            Value::Object(map) => {
                if let Some(also) = self.also {
                    let known = |key: &str| fields.contains(&key) || also.iter().any(|names| names.contains(&key));
                    if let Some(key) = map.keys().find(|key| !known(key)) {
                        self.unknown.set(Some(key));
                        return Err(de::Error::custom("unknown field"));
                    }
                }
                visitor.visit_map(DeclaredFields { map, names: fields.iter(), field: self.field, value: None })
            }
            other => other.deserialize_struct(_name, fields, visitor),
        }
    }

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        self.body.deserialize_any(visitor)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf option unit
        unit_struct newtype_struct seq tuple tuple_struct map enum identifier ignored_any
    }
}

struct DeclaredFields<'de> {
    map: &'de serde_json::Map<String, Value>,
    names: std::slice::Iter<'static, &'static str>,
    field: &'de Cell<&'static str>,
    /// The value of the field whose name was just given: `None` when absent.
    value: Option<&'de Value>,
}

impl<'de> MapAccess<'de> for DeclaredFields<'de> {
    type Error = serde_json::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, Self::Error> {
        let Some(name) = self.names.next() else { return Ok(None) };
        self.field.set(name);
        self.value = self.map.get(*name);
        seed.deserialize(name.into_deserializer()).map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Self::Error> {
        match self.value.take() {
            Some(value) => seed.deserialize(value),
            None => seed.deserialize(Absent),
        }
    }
}

/// A declared field the object does not have: `None` to an `Option` (shown as unit, which
/// `fields::Clearable` tells apart from `null`), and `REQUIRED` to anything else.
struct Absent;

impl<'de> Deserializer<'de> for Absent {
    type Error = serde_json::Error;

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        visitor.visit_unit()
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        visitor.visit_unit()
    }

    fn deserialize_any<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, Self::Error> {
        Err(de::Error::custom(REQUIRED))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf unit
        unit_struct newtype_struct seq tuple tuple_struct map struct enum identifier
    }
}

/// Decodes a query string; the last value of a repeated key counts. A parameter `T` does not
/// declare (nor list in `Accepts::ALSO`) is a 400 `unknown_field`.
pub fn decode_query<T: DeserializeOwned + Accepts>(raw: Option<&str>) -> Result<T, ApiError> {
    decode_query_with(raw, Some(&[T::ALSO]))
}

/// Reads the parameters `T` declares and ignores the others.
pub fn decode_query_lenient<T: DeserializeOwned>(raw: Option<&str>) -> Result<T, ApiError> {
    decode_query_with(raw, None)
}

fn decode_query_with<T: DeserializeOwned>(raw: Option<&str>, also: Option<&[&[&str]]>) -> Result<T, ApiError> {
    let pairs = serde_urlencoded::from_str::<Vec<(String, String)>>(raw.unwrap_or_default()).map_err(|e| {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_query", format!("the query string is malformed: {e}"))
    })?;
    // As JSON strings, the values decode with the same field types as a body's.
    let last: serde_json::Map<String, Value> = pairs.into_iter().map(|(k, v)| (k, Value::String(v))).collect();
    decode_with(&Value::Object(last), also)
}

/// A decoding error as the client sees it, naming the field that was being decoded.
fn refusal(field: &'static str, error: &serde_json::Error) -> ApiError {
    let message = error.to_string();
    if message == REQUIRED {
        return ApiError::missing(field);
    }
    // A value of the wrong type: serde says "invalid type: <what came>, expected <what the
    // field's visitor expects>".
    let message = match message.rsplit_once(", expected ") {
        Some((got, expected)) if got.starts_with("invalid type: ") => format!("`{field}` must be {expected}"),
        // The `{field}` mark comes first in every rule's message, before any client text.
        _ => message.replacen("{field}", field, 1),
    };
    ApiError::invalid(field, message)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::api::fields::{Clearable, Cost, Name, TagList, Whole};
    use crate::domain::{Money, Tags};

    #[derive(Deserialize)]
    struct Sample {
        title: NonBlank,
        icon: Option<Name>,
        cost: Option<Cost>,
        count: Option<Whole<0, 10>>,
        #[serde(default)]
        tags: Clearable<TagList>,
    }

    impl Accepts for Sample {}

    fn refusal_of(body: Value) -> (String, &'static str, Option<String>) {
        let error = decode_body::<Sample>(&body).err().expect("refused");
        (error.message, error.code, error.field.map(Cow::into_owned))
    }

    #[test]
    fn strings_are_checked_for_presence_type_length_and_blankness() {
        let title = |t: &str| (t.to_owned(), "validation_error", Some("title".to_owned()));
        assert_eq!(refusal_of(json!({})), ("`title` is required".into(), "missing_field", Some("title".into())));
        assert_eq!(refusal_of(json!({"title": null})).1, "missing_field");
        assert_eq!(refusal_of(json!({"title": 5})), title("`title` must be a string"));
        assert_eq!(refusal_of(json!({"title": " "})), title("`title` must not be blank"));
        let long = "x".repeat(MAX_NAME_CHARS + 1);
        assert_eq!(refusal_of(json!({"title": "t", "icon": long})).2.as_deref(), Some("icon"));
    }

    #[test]
    fn numbers_are_never_clamped() {
        let field = |body: Value| refusal_of(body).2;
        assert_eq!(field(json!({"title": "t", "cost": -1})).as_deref(), Some("cost"));
        assert_eq!(field(json!({"title": "t", "cost": 1.2345678})).as_deref(), Some("cost"), "7 decimal places");
        assert_eq!(field(json!({"title": "t", "cost": 1e9 + 1.0})).as_deref(), Some("cost"));
        assert_eq!(field(json!({"title": "t", "count": 1.5})).as_deref(), Some("count"));
        assert_eq!(field(json!({"title": "t", "count": 11})).as_deref(), Some("count"));
        assert_eq!(field(json!({"title": "t", "count": "3"})).as_deref(), Some("count"));
        let ok: Sample = decode_body(&json!({"title": "t", "icon": "i", "cost": 1.5, "count": 3.0})).unwrap();
        assert_eq!((&*ok.title.0, ok.icon.map(|i| i.0).as_deref()), ("t", Some("i")));
        assert_eq!((ok.cost.map(|c| c.0), ok.count.map(|c| c.0)), (Some(Money::from_micros(1_500_000)), Some(3)));
    }

    #[test]
    fn tags_take_an_array_or_its_json_string_and_null_clears_them() {
        let tags = |body: Value| decode_body::<Sample>(&body).map(|s| s.tags.into_patch::<Tags>());
        assert_eq!(tags(json!({"title": "t", "tags": ["x", "y"]})).unwrap().unwrap().unwrap().len(), 2);
        assert_eq!(&*tags(json!({"title": "t", "tags": "[\"x\"]"})).unwrap().unwrap().unwrap()[0], "x");
        assert_eq!(tags(json!({"title": "t", "tags": null})).unwrap(), Some(None));
        assert_eq!(tags(json!({"title": "t"})).unwrap(), None);
        for bad in [json!("x"), json!([1]), json!({"a": 1})] {
            assert_eq!(refusal_of(json!({"title": "t", "tags": bad})).2.as_deref(), Some("tags"));
        }
    }

    #[test]
    fn the_first_broken_rule_in_declared_order_is_reported() {
        // `title` comes first in `Sample`, though last in the body.
        assert_eq!(refusal_of(json!({"count": 99, "title": 1})).2.as_deref(), Some("title"));
        assert_eq!(refusal_of(json!({"count": 99})).1, "missing_field");
    }

    #[test]
    fn a_query_keeps_the_last_value_of_a_repeated_key() {
        #[derive(Deserialize)]
        struct Filter {
            id: Option<QueryId>,
        }
        impl Accepts for Filter {}
        let filter: Filter = decode_query(Some("id=a&id=b")).unwrap();
        assert_eq!(filter.id.map(|id| id.0).as_deref(), Some("b"));
        assert_eq!(decode_query::<Filter>(Some("id=")).err().unwrap().field.as_deref(), Some("id"));
    }
}
