//! The priority index of queued tasks, kept per venture.
//!
//! Each venture's queued tasks sit in a `BTreeMap` ordered by claim order (priority, then
//! oldest `createdAt`, then id), so insert, remove and "best task of this venture" are
//! O(log n). The scheduler picks across ventures with a second, much smaller ordered set
//! of each venture's best eligible task (see `SchedulerState::refresh_candidate`).

use std::collections::{BTreeMap, HashMap};

use crate::domain::{Id, Millis, Priority, Task};

/// A task's place in claim order. The derived `Ord` compares fields top to bottom.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct QueueKey {
    pub priority: Priority,
    pub created_at: Millis,
    pub id: Id,
}

impl QueueKey {
    pub fn of(task: &Task) -> QueueKey {
        QueueKey { priority: task.priority, created_at: task.created_at, id: task.id.clone() }
    }
}

/// Queued tasks by venture, in claim order, each with the cost the budget guard checks.
#[derive(Debug, Default)]
pub struct QueuedIndex {
    by_venture: HashMap<Id, BTreeMap<QueueKey, f64>>,
    depth_by_priority: [usize; 3],
}

impl QueuedIndex {
    pub fn insert(&mut self, venture_id: &Id, key: QueueKey, estimated_cost: f64) {
        let priority = key.priority;
        let previous = self.by_venture.entry(venture_id.clone()).or_default().insert(key, estimated_cost);
        if previous.is_none() {
            self.depth_by_priority[priority as usize] += 1;
        }
    }

    /// Removes a task; returns whether it was there.
    pub fn remove(&mut self, venture_id: &Id, key: &QueueKey) -> bool {
        let Some(queue) = self.by_venture.get_mut(venture_id) else { return false };
        let removed = queue.remove(key).is_some();
        if removed {
            self.depth_by_priority[key.priority as usize] -= 1;
        }
        if queue.is_empty() {
            self.by_venture.remove(venture_id);
        }
        removed
    }

    /// The venture's queued tasks in claim order, with their estimated costs.
    pub fn iter_venture<'a>(&'a self, venture_id: &Id) -> impl Iterator<Item = (&'a QueueKey, f64)> + 'a {
        self.by_venture.get(venture_id).into_iter().flat_map(|queue| queue.iter().map(|(k, c)| (k, *c)))
    }

    /// The first of the venture's queued tasks, in claim order, whose cost fits in `room`.
    pub fn first_fitting(&self, venture_id: &Id, room: f64) -> Option<&QueueKey> {
        self.iter_venture(venture_id).find(|(_, cost)| fits(*cost, room)).map(|(key, _)| key)
    }

    /// Queued tasks by priority, for the `queue_depth` gauge.
    pub fn depth(&self, priority: Priority) -> usize {
        self.depth_by_priority[priority as usize]
    }

    pub fn len(&self) -> usize {
        self.depth_by_priority.iter().sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Costs are user-supplied decimals summed in floating point; a tolerance far below a cent
/// keeps `9 × 1.1 + 1.1 ≤ 11` true.
pub fn fits(cost: f64, room: f64) -> bool {
    cost <= room + 1e-9
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(priority: Priority, created_at: i64, id: &str) -> QueueKey {
        QueueKey { priority, created_at: Millis(created_at), id: id.into() }
    }

    #[test]
    fn orders_by_priority_then_age_then_id() {
        let venture: Id = "v".into();
        let mut index = QueuedIndex::default();
        index.insert(&venture, key(Priority::Low, 1, "a"), 0.0);
        index.insert(&venture, key(Priority::Medium, 5, "b"), 0.0);
        index.insert(&venture, key(Priority::High, 9, "c"), 0.0);
        index.insert(&venture, key(Priority::Medium, 5, "a"), 0.0);
        let order: Vec<&str> = index.iter_venture(&venture).map(|(k, _)| &*k.id).collect();
        assert_eq!(order, ["c", "a", "b", "a"]);
        assert_eq!(index.depth(Priority::Medium), 2);
        assert_eq!(index.len(), 4);
    }

    #[test]
    fn remove_is_exact_and_empties_the_venture() {
        let venture: Id = "v".into();
        let mut index = QueuedIndex::default();
        index.insert(&venture, key(Priority::High, 1, "a"), 0.0);
        assert!(!index.remove(&venture, &key(Priority::Low, 1, "a")));
        assert!(index.remove(&venture, &key(Priority::High, 1, "a")));
        assert!(!index.remove(&venture, &key(Priority::High, 1, "a")));
        assert!(index.is_empty());
        assert_eq!(index.iter_venture(&venture).count(), 0);
    }

    #[test]
    fn first_fitting_skips_tasks_over_the_room() {
        let venture: Id = "v".into();
        let mut index = QueuedIndex::default();
        index.insert(&venture, key(Priority::High, 1, "big"), 50.0);
        index.insert(&venture, key(Priority::Low, 1, "small"), 1.1);
        assert_eq!(&*index.first_fitting(&venture, 100.0).unwrap().id, "big");
        assert_eq!(&*index.first_fitting(&venture, 1.1).unwrap().id, "small");
        assert!(index.first_fitting(&venture, 1.0).is_none());
        assert!(fits(1.1, 9.9 + 1.1 - 9.9));
    }
}
