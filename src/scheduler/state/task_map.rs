//! The unfinished tasks by id, each stored once: the entry is the task, found by its own id.
//!
//! A `HashMap<Id, Arc<Task>>` keeps a second copy of the id's fat pointer in every slot
//! (24 bytes a slot where this keeps 8); with a hash table at most 7/8 full, that is about
//! 20 bytes per task, out of the few hundred an unfinished task may cost.

use std::borrow::Borrow;
use std::collections::HashSet;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use crate::domain::{Id, Task};

#[derive(Debug, Default)]
pub(super) struct TaskMap {
    tasks: HashSet<ById>,
}

impl TaskMap {
    pub(super) fn with_capacity(capacity: usize) -> TaskMap {
        TaskMap { tasks: HashSet::with_capacity(capacity) }
    }

    pub(super) fn get(&self, id: &Id) -> Option<&Arc<Task>> {
        self.tasks.get(&**id).map(|entry| &entry.0)
    }

    pub(super) fn contains_key(&self, id: &Id) -> bool {
        self.tasks.contains(&**id)
    }

    /// Stores the task under its id, replacing the one stored there.
    pub(super) fn insert(&mut self, task: Arc<Task>) {
        self.tasks.replace(ById(task));
    }

    pub(super) fn remove(&mut self, id: &Id) -> Option<Arc<Task>> {
        self.tasks.take(&**id).map(|entry| entry.0)
    }

    pub(super) fn values(&self) -> impl Iterator<Item = &Arc<Task>> {
        self.tasks.iter().map(|entry| &entry.0)
    }
}

/// A task hashed and compared by its id alone, so the set can be searched with a `&str`.
#[derive(Debug)]
struct ById(Arc<Task>);

impl Hash for ById {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // As `str` hashes, which `Borrow<str>` requires.
        (*self.0.id).hash(state)
    }
}

impl PartialEq for ById {
    fn eq(&self, other: &ById) -> bool {
        self.0.id == other.0.id
    }
}

impl Eq for ById {}

impl Borrow<str> for ById {
    fn borrow(&self) -> &str {
        &self.0.id
    }
}

impl std::ops::Index<&Id> for TaskMap {
    type Output = Arc<Task>;

    /// The task with this id; panics when there is none, as `HashMap`'s indexing does.
    fn index(&self, id: &Id) -> &Arc<Task> {
        self.get(id).expect("an unfinished task with this id")
    }
}
