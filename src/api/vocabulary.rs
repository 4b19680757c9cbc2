//! The domain's enums on the wire. Each is decoded by name and described with every name,
//! both from the enum's own vocabulary (`ALL`, `as_str`, `parse`), so no list of names is
//! written twice. The domain stays free of serde: these impls live at the edge.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, Visitor};
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::RefOr;
use utoipa::{PartialSchema, ToSchema};

use crate::domain::{AgentStatus, AttemptOutcome, OnDependencyFailure, Priority, TaskStatus, VentureStatus};
use crate::scheduler::ListOrder;

macro_rules! vocabulary {
    ($($ty:ident: $description:literal;)+) => {$(
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                d.deserialize_any(NameIn { all: $ty::ALL, as_str: $ty::as_str, parse: $ty::parse })
            }
        }

        impl PartialSchema for $ty {
            fn schema() -> RefOr<Schema> {
                let names = $ty::ALL.iter().map(|value| value.as_str());
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .enum_values(Some(names))
                    .description(Some($description))
                    .into()
            }
        }

        impl ToSchema for $ty {}
    )+};
}

vocabulary! {
    TaskStatus: "A task's status. `blocked`: waits for unfinished dependencies, never claimed; `completed`, `failed` and `cancelled` are finished.";
    OnDependencyFailure: "What a task does when a dependency ends `failed` or `cancelled`: `cancel` (the default) cancels it too, `ignore` counts that dependency as done.";
    Priority: "A task's or venture's priority.";
    VentureStatus: "A venture's status. Only `active` ventures dispense tasks.";
    AgentStatus: "An agent's status.";
    ListOrder: "Which way a task listing runs: `asc` (the default) oldest first, in list order (`createdAt`, then id); `desc` newest first, the same order reversed.";
    AttemptOutcome: "How an attempt ended: `active` while it runs; `failed` is an error report, `expired` a lease that ran out, `released` a claim taken back (never delivered, or taken from its holder by a PATCH or an agent DELETE), `cancelled` a report after the task's cancel was asked for.";
}

/// Accepts one of the names of `all`.
struct NameIn<T: 'static> {
    all: &'static [T],
    as_str: fn(T) -> &'static str,
    parse: fn(&str) -> Option<T>,
}

impl<T: Copy> Visitor<'_> for NameIn<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_str<E: de::Error>(self, name: &str) -> Result<T, E> {
        (self.parse)(name).ok_or_else(|| {
            let names: Vec<&str> = self.all.iter().map(|value| (self.as_str)(*value)).collect();
            E::custom(format!("`{{field}}` must be one of {}; got `{name}`", names.join(", ")))
        })
    }
}
