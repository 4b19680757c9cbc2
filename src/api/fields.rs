//! The fields of request bodies and query strings: one type per rule (type, length, range,
//! vocabulary), which both decodes the field and describes it in the OpenAPI document.
//!
//! A broken rule is a serde error whose message says `{field}` where the field's name goes;
//! the extractors (`extract`), which know which field they were decoding, fill it in. A
//! value of the wrong type is refused by serde itself with "expected <what the visitor
//! expects>", which the extractors turn into "`<field>` must be <that>".

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

use serde::de::{self, Deserialize, Deserializer, SeqAccess, Visitor};
use serde_json::Value;
use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, OneOfBuilder, Schema, SchemaType, Type};
use utoipa::openapi::RefOr;
use utoipa::{PartialSchema, ToSchema};

use crate::domain::{Id, Millis, Money, Tags, TaskStatus};
use crate::scheduler::MAX_DEPENDENCIES;

/// Longest `name`, `title`, `agentName`, `model`, `icon`, `type` and ids, in characters.
pub const MAX_NAME_CHARS: usize = 1_000;
/// Longest `description`, `output` and `error`, in bytes.
pub const MAX_TEXT_BYTES: usize = 256 * 1024;

/// The message of a required field that is `null`; the extractors answer `missing_field`,
/// as for an absent one.
pub const REQUIRED: &str = "`{field}` is required";

/// A string of at most `MAX_NAME_CHARS` characters (`icon`, `model`).
pub struct Name(pub Arc<str>);

/// A name with a character that is not white space: ids, titles, names, types.
pub struct NonBlank(pub Arc<str>);

/// A long text of at most `MAX_TEXT_BYTES` bytes (`description`, `output`, `error`).
pub struct Text(pub Arc<str>);

/// A cost or budget: a number from 0 to 10^9 with at most six decimal places
/// (`Money::from_decimal`).
pub struct Cost(pub Money);

/// A whole number from `MIN` to `MAX`, never clamped. `3.0` counts as 3, as in JSON Schema.
pub struct Whole<const MIN: u64, const MAX: u64>(pub u64);

/// Tags: an array of strings, or a string holding one as JSON (the form the server returns).
pub struct TagList(pub Tags);

/// Task ids: an array of at most `MAX_DEPENDENCIES` non-blank ids (`dependsOn`).
pub struct TaskIdList(pub Vec<Id>);

/// The only status a task may be created with.
pub struct InitialStatus;

/// An id in a query string: 1 to `MAX_NAME_CHARS` characters.
pub struct QueryId(pub Id);

/// A whole number from `MIN` to `MAX` in a query string.
pub struct QueryWhole<const MIN: u64, const MAX: u64>(pub u64);

/// `?fields=id,title,status`: the task fields a listing keeps, each a field of the task
/// shape (`wire::TASK_FIELDS`, checked against the encoded shape).
pub struct TaskFieldList(pub Arc<[String]>);

/// The largest `u32`, as a bound of `Whole`.
pub const U32_MAX: u64 = u32::MAX as u64;
/// The largest `i64` (SQLite's integers), as a bound of `Whole`.
pub const I64_MAX: u64 = i64::MAX as u64;

/// A task's attempt limit.
pub type MaxAttempts = Whole<1, U32_MAX>;
/// A lease's fencing token: the task's `attempts` when claimed.
pub type Attempt = Whole<0, U32_MAX>;
/// A lease's length, up to a day.
pub type LeaseSeconds = Whole<1, 86_400>;
/// The back-off base after a failed attempt, up to the longest back-off (an hour).
pub type RetryDelaySeconds = Whole<0, 3_600>;

/// A point in time: RFC 3339 with any offset (`2026-12-01T09:00:00Z`).
pub struct Timestamp(pub Millis);

/// Longest idempotency key, in characters.
pub const MAX_KEY_CHARS: usize = 200;

/// An idempotency key: 1 to `MAX_KEY_CHARS` characters.
pub struct IdempotencyKey(pub Arc<str>);
/// How long a claim may wait for work.
pub type WaitMs = Whole<0, 30_000>;
/// Tokens and sessions an agent has used.
pub type Count = Whole<0, I64_MAX>;

/// A field a `PATCH` may clear: absent keeps it, `null` clears it. (The extractors show an
/// absent field as unit, which `Option` also takes as `None`, and `null` as none.)
#[derive(Default)]
pub enum Clearable<T> {
    #[default]
    Keep,
    Clear,
    Set(T),
}

impl<T> Clearable<T> {
    /// The scheduler's form: `None` keeps, `Some(None)` clears.
    pub fn into_patch<U: From<T>>(self) -> Option<Option<U>> {
        match self {
            Clearable::Keep => None,
            Clearable::Clear => Some(None),
            Clearable::Set(value) => Some(Some(value.into())),
        }
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Clearable<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct ClearableVisitor<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for ClearableVisitor<T> {
            type Value = Clearable<T>;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a value or null")
            }

            fn visit_unit<E: de::Error>(self) -> Result<Clearable<T>, E> {
                Ok(Clearable::Keep)
            }

            fn visit_none<E: de::Error>(self) -> Result<Clearable<T>, E> {
                Ok(Clearable::Clear)
            }

            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Clearable<T>, D::Error> {
                T::deserialize(d).map(Clearable::Set)
            }
        }
        d.deserialize_option(ClearableVisitor(PhantomData))
    }
}

macro_rules! into_value {
    ($($field:ty => $value:ty: |$this:ident| $convert:expr;)+) => {$(
        impl From<$field> for $value {
            fn from($this: $field) -> $value {
                $convert
            }
        }
    )+};
}

into_value! {
    Name => Arc<str>: |name| name.0;
    NonBlank => Arc<str>: |name| name.0;
    Text => Arc<str>: |text| text.0;
    QueryId => Id: |id| id.0;
    Cost => Money: |cost| cost.0;
    TagList => Tags: |tags| tags.0;
    TaskIdList => Vec<Id>: |ids| ids.0;
    Timestamp => Millis: |time| time.0;
    IdempotencyKey => Arc<str>: |key| key.0;
}

impl<const MIN: u64, const MAX: u64> From<Whole<MIN, MAX>> for u64 {
    fn from(whole: Whole<MIN, MAX>) -> u64 {
        whole.0
    }
}

/// Only for bounds within `u32` (`MaxAttempts`, `Attempt`, `LeaseSeconds`): wider ones do
/// not compile.
impl<const MIN: u64, const MAX: u64> From<Whole<MIN, MAX>> for u32 {
    fn from(whole: Whole<MIN, MAX>) -> u32 {
        const { assert!(MAX <= U32_MAX, "this bound does not fit a u32") };
        whole.0 as u32
    }
}

impl Name {
    fn check(s: &str) -> Result<(), String> {
        if s.chars().count() <= MAX_NAME_CHARS {
            Ok(())
        } else {
            Err(format!("`{{field}}` is too long: at most {MAX_NAME_CHARS} characters"))
        }
    }
}

impl NonBlank {
    fn check(s: &str) -> Result<(), String> {
        Name::check(s)?;
        if s.trim().is_empty() {
            return Err("`{field}` must not be blank".to_owned());
        }
        Ok(())
    }
}

impl Text {
    fn check(s: &str) -> Result<(), String> {
        if s.len() <= MAX_TEXT_BYTES {
            Ok(())
        } else {
            Err(format!("`{{field}}` is too long: at most {MAX_TEXT_BYTES} bytes"))
        }
    }
}

/// A string that passes `check`; `null` where one is required is `REQUIRED`.
struct Checked(fn(&str) -> Result<(), String>);

impl Visitor<'_> for Checked {
    type Value = Arc<str>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<Arc<str>, E> {
        (self.0)(s).map_err(E::custom)?;
        Ok(s.into())
    }

    fn visit_unit<E: de::Error>(self) -> Result<Arc<str>, E> {
        Err(E::custom(REQUIRED))
    }
}

impl<'de> Deserialize<'de> for Name {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(Checked(Name::check)).map(Name)
    }
}

impl<'de> Deserialize<'de> for NonBlank {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(Checked(NonBlank::check)).map(NonBlank)
    }
}

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(Checked(Text::check)).map(Text)
    }
}

impl<'de> Deserialize<'de> for QueryId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        fn check(s: &str) -> Result<(), String> {
            if s.is_empty() || s.chars().count() > MAX_NAME_CHARS {
                return Err(format!("`{{field}}` must be 1 to {MAX_NAME_CHARS} characters"));
            }
            Ok(())
        }
        d.deserialize_any(Checked(check)).map(QueryId)
    }
}

impl<'de> Deserialize<'de> for TaskFieldList {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        fn check(s: &str) -> Result<(), String> {
            let known = super::wire::TASK_FIELDS;
            match s.split(',').map(str::trim).find(|name| !known.contains(name)) {
                Some(unknown) => Err(format!(
                    "`{{field}}` names `{unknown}`, which is not a task field; the fields are {}",
                    known.join(", ")
                )),
                None => Ok(()),
            }
        }
        let list = d.deserialize_any(Checked(check))?;
        Ok(TaskFieldList(list.split(',').map(|name| name.trim().to_owned()).collect()))
    }
}

impl<'de> Deserialize<'de> for Cost {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct CostVisitor;
        impl CostVisitor {
            fn check<E: de::Error>(x: f64) -> Result<Cost, E> {
                Money::from_decimal(x).map(Cost).ok_or_else(|| {
                    E::custom(format!(
                        "`{{field}}` must be a number from 0 to {} with at most 6 decimal places",
                        Money::MAX_INPUT
                    ))
                })
            }
        }
        impl Visitor<'_> for CostVisitor {
            type Value = Cost;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a number")
            }

            fn visit_f64<E: de::Error>(self, x: f64) -> Result<Cost, E> {
                Self::check(x)
            }

            fn visit_u64<E: de::Error>(self, x: u64) -> Result<Cost, E> {
                Self::check(x as f64)
            }

            fn visit_i64<E: de::Error>(self, x: i64) -> Result<Cost, E> {
                Self::check(x as f64)
            }
        }
        d.deserialize_any(CostVisitor)
    }
}

impl<'de, const MIN: u64, const MAX: u64> Deserialize<'de> for Whole<MIN, MAX> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct WholeVisitor<const MIN: u64, const MAX: u64>;
        impl<const MIN: u64, const MAX: u64> WholeVisitor<MIN, MAX> {
            fn check<E: de::Error>(x: i128) -> Result<Whole<MIN, MAX>, E> {
                if x >= i128::from(MIN) && x <= i128::from(MAX) {
                    Ok(Whole(x as u64))
                } else {
                    Err(E::custom(format!("`{{field}}` must be between {MIN} and {MAX}")))
                }
            }
        }
        impl<const MIN: u64, const MAX: u64> Visitor<'_> for WholeVisitor<MIN, MAX> {
            type Value = Whole<MIN, MAX>;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a whole number")
            }

            fn visit_u64<E: de::Error>(self, x: u64) -> Result<Self::Value, E> {
                Self::check(i128::from(x))
            }

            fn visit_i64<E: de::Error>(self, x: i64) -> Result<Self::Value, E> {
                Self::check(i128::from(x))
            }

            fn visit_f64<E: de::Error>(self, x: f64) -> Result<Self::Value, E> {
                if x.fract() == 0.0 && x.abs() < 1e30 {
                    Self::check(x as i128)
                } else {
                    Err(E::custom("`{field}` must be a whole number"))
                }
            }
        }
        d.deserialize_any(WholeVisitor::<MIN, MAX>)
    }
}

impl<'de, const MIN: u64, const MAX: u64> Deserialize<'de> for QueryWhole<MIN, MAX> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = Cow::<str>::deserialize(d)?;
        match text.parse::<u64>() {
            Ok(x) if (MIN..=MAX).contains(&x) => Ok(QueryWhole(x)),
            _ => Err(de::Error::custom(format!("`{{field}}` must be a whole number {}", range_words(MIN, MAX)))),
        }
    }
}

/// How a range reads in an error: a top that is only the type's limit is not spelled out.
fn range_words(min: u64, max: u64) -> String {
    if max == u64::MAX {
        format!("of at least {min}")
    } else {
        format!("from {min} to {max}")
    }
}

impl<'de> Deserialize<'de> for TagList {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct TagsVisitor;
        impl<'de> Visitor<'de> for TagsVisitor {
            type Value = TagList;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an array of strings")
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut items: A) -> Result<TagList, A::Error> {
                let mut tags = Vec::new();
                while let Some(item) = items.next_element::<Value>()? {
                    tags.push(tag(item).map_err(de::Error::custom)?);
                }
                Ok(TagList(tags.into()))
            }

            /// The seed's storage form: the array as JSON text.
            fn visit_str<E: de::Error>(self, text: &str) -> Result<TagList, E> {
                let Ok(Value::Array(items)) = serde_json::from_str::<Value>(text) else {
                    return Err(E::custom("`{field}` must be an array of strings, or a string holding one as JSON"));
                };
                let tags: Result<Tags, _> = items.into_iter().map(tag).collect();
                tags.map(TagList).map_err(E::custom)
            }
        }
        fn tag(item: Value) -> Result<Arc<str>, String> {
            match item {
                Value::String(s) if s.chars().count() <= MAX_NAME_CHARS => Ok(s.into()),
                Value::String(_) => Err(format!("each tag is at most {MAX_NAME_CHARS} characters")),
                _ => Err("`{field}` must hold only strings".to_owned()),
            }
        }
        d.deserialize_any(TagsVisitor)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        fn check(s: &str) -> Result<(), String> {
            match Millis::parse(s) {
                Some(_) => Ok(()),
                None => Err("`{field}` must be an RFC 3339 time, such as 2026-12-01T09:00:00Z".to_owned()),
            }
        }
        let text = d.deserialize_any(Checked(check))?;
        Ok(Timestamp(Millis::parse(&text).expect("checked above")))
    }
}

impl<'de> Deserialize<'de> for IdempotencyKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        fn check(s: &str) -> Result<(), String> {
            match s.chars().count() {
                1..=MAX_KEY_CHARS => Ok(()),
                _ => Err(format!("`{{field}}` must be 1 to {MAX_KEY_CHARS} characters")),
            }
        }
        d.deserialize_any(Checked(check)).map(IdempotencyKey)
    }
}

impl<'de> Deserialize<'de> for TaskIdList {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct IdsVisitor;
        impl<'de> Visitor<'de> for IdsVisitor {
            type Value = TaskIdList;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an array of task ids")
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut items: A) -> Result<TaskIdList, A::Error> {
                let mut ids = Vec::new();
                while let Some(item) = items.next_element::<Value>()? {
                    if ids.len() == MAX_DEPENDENCIES {
                        return Err(de::Error::custom(format!(
                            "`{{field}}` holds at most {MAX_DEPENDENCIES} task ids"
                        )));
                    }
                    let Value::String(id) = item else {
                        return Err(de::Error::custom("`{field}` must hold only task ids (strings)"));
                    };
                    NonBlank::check(&id).map_err(|_| {
                        de::Error::custom(format!(
                            "each id in `{{field}}` is 1 to {MAX_NAME_CHARS} characters, not all blank"
                        ))
                    })?;
                    ids.push(id.into());
                }
                Ok(TaskIdList(ids))
            }
        }
        d.deserialize_any(IdsVisitor)
    }
}

impl<'de> Deserialize<'de> for InitialStatus {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match TaskStatus::deserialize(d)? {
            TaskStatus::Queue => Ok(InitialStatus),
            _ => Err(de::Error::custom("a task is created queued; set other statuses with PATCH")),
        }
    }
}

// ----- how the fields show in the OpenAPI document -----

/// A string schema with the given bounds.
fn string(min_length: Option<usize>, max_length: usize) -> ObjectBuilder {
    ObjectBuilder::new().schema_type(Type::String).min_length(min_length).max_length(Some(max_length))
}

impl PartialSchema for Name {
    fn schema() -> RefOr<Schema> {
        string(None, MAX_NAME_CHARS).into()
    }
}

impl ToSchema for Name {}

impl PartialSchema for NonBlank {
    /// At least one character that is not Unicode white space, which `str::trim` removes.
    fn schema() -> RefOr<Schema> {
        string(Some(1), MAX_NAME_CHARS)
            .pattern(Some("[^\\t\\n\\v\\f\\r \\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]"))
            .description(Some("A non-blank string of at most 1,000 characters."))
            .into()
    }
}

impl ToSchema for NonBlank {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("NonBlankString")
    }
}

impl PartialSchema for Text {
    fn schema() -> RefOr<Schema> {
        string(None, MAX_TEXT_BYTES).description(Some("At most 256 KiB of UTF-8.")).into()
    }
}

impl ToSchema for Text {}

impl PartialSchema for Cost {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::Number)
            .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(utoipa::openapi::KnownFormat::Double)))
            .minimum(Some(0))
            .maximum(Some(Money::MAX_INPUT.micros() / Money::SCALE))
            .description(Some("An amount of money: at most 6 decimal places."))
            .into()
    }
}

impl ToSchema for Cost {}

impl<const MIN: u64, const MAX: u64> PartialSchema for Whole<MIN, MAX> {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new().schema_type(Type::Integer).minimum(Some(MIN)).maximum(Some(MAX)).into()
    }
}

/// Fields of this type say `#[schema(inline)]`; the name only keeps bounds apart if one does not.
impl<const MIN: u64, const MAX: u64> ToSchema for Whole<MIN, MAX> {
    fn name() -> Cow<'static, str> {
        Cow::Owned(format!("Whole{MIN}To{MAX}"))
    }
}

impl PartialSchema for QueryId {
    fn schema() -> RefOr<Schema> {
        string(Some(1), MAX_NAME_CHARS).into()
    }
}

impl ToSchema for QueryId {}

impl PartialSchema for TaskFieldList {
    fn schema() -> RefOr<Schema> {
        let names = super::wire::TASK_FIELDS.join("|");
        ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some(format!("^\\s*({names})\\s*(,\\s*({names})\\s*)*$")))
            .description(Some("Task field names, comma-separated."))
            .into()
    }
}

impl ToSchema for TaskFieldList {}

impl<const MIN: u64, const MAX: u64> PartialSchema for QueryWhole<MIN, MAX> {
    fn schema() -> RefOr<Schema> {
        Whole::<MIN, MAX>::schema()
    }
}

impl<const MIN: u64, const MAX: u64> ToSchema for QueryWhole<MIN, MAX> {
    fn name() -> Cow<'static, str> {
        Whole::<MIN, MAX>::name()
    }
}

impl PartialSchema for TagList {
    fn schema() -> RefOr<Schema> {
        let tag = string(None, MAX_NAME_CHARS);
        let list = ArrayBuilder::new().items(tag).description(Some("The tags."));
        let text = ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some("^[ \\t\\n\\r]*\\[[\\s\\S]*\\][ \\t\\n\\r]*$"))
            .content_media_type("application/json")
            .description(Some("A JSON array of strings, as text."));
        OneOfBuilder::new()
            .item(list)
            .item(text)
            .description(Some(
                "Tags: an array of strings (each at most 1,000 characters), or a string holding such an array \
                 as JSON (the form the server returns, e.g. `\"[\\\"scraping\\\"]\"`).",
            ))
            .into()
    }
}

impl PartialSchema for Timestamp {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(utoipa::openapi::KnownFormat::DateTime)))
            .description(Some("An RFC 3339 time (any offset)."))
            .into()
    }
}

impl ToSchema for Timestamp {}

impl PartialSchema for IdempotencyKey {
    fn schema() -> RefOr<Schema> {
        string(Some(1), MAX_KEY_CHARS).description(Some("1 to 200 characters.")).into()
    }
}

impl ToSchema for IdempotencyKey {}

impl PartialSchema for TaskIdList {
    fn schema() -> RefOr<Schema> {
        ArrayBuilder::new()
            .items(NonBlank::schema())
            .max_items(Some(MAX_DEPENDENCIES))
            .description(Some("Ids of existing tasks (at most 100)."))
            .into()
    }
}

impl ToSchema for TaskIdList {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("TaskIds")
    }
}

impl ToSchema for TagList {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("Tags")
    }
}

impl PartialSchema for InitialStatus {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(SchemaType::new(Type::String))
            .enum_values(Some([TaskStatus::Queue.as_str()]))
            .description(Some("The only status a task may be created with."))
            .into()
    }
}

impl ToSchema for InitialStatus {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("InitialTaskStatus")
    }
}
