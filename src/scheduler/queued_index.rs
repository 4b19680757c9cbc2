//! The priority index of queued tasks, kept per venture.
//!
//! Each venture's queued tasks sit in a `BTreeMap` ordered by claim order (priority, then
//! oldest `createdAt`, then id), so insert, remove and "best task of this venture" are
//! O(log n). The scheduler picks across ventures with a second, much smaller ordered set
//! of each venture's best eligible task (see `SchedulerState::refresh_candidate`).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use crate::domain::{Id, Millis, Money, Priority, Task};

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

    /// A key before every task of `priority`.
    fn first_of(priority: Priority) -> QueueKey {
        QueueKey { priority, created_at: Millis(i64::MIN), id: Id::from("") }
    }
}

/// Queued tasks by venture, in claim order, each with the cost the budget guard checks;
/// and the same tasks by tag, each with its venture and cost.
#[derive(Debug, Default)]
pub struct QueuedIndex {
    by_venture: HashMap<Id, BTreeMap<QueueKey, Money>>,
    /// Each venture's queued costs as a multiset: how many tasks a budget holds back is a
    /// range count, not a scan.
    costs_by_venture: HashMap<Id, BTreeMap<Money, usize>>,
    by_tag: HashMap<Arc<str>, BTreeMap<QueueKey, (Id, Money)>>,
    depth_by_priority: [usize; 3],
}

impl QueuedIndex {
    pub fn insert(&mut self, venture_id: &Id, key: QueueKey, estimated_cost: Money, tags: &[Arc<str>]) {
        for tag in tags {
            self.by_tag.entry(tag.clone()).or_default().insert(key.clone(), (venture_id.clone(), estimated_cost));
        }
        let priority = key.priority;
        let previous = self.by_venture.entry(venture_id.clone()).or_default().insert(key, estimated_cost);
        if let Some(previous) = previous {
            self.forget_cost(venture_id, previous);
        } else {
            self.depth_by_priority[priority as usize] += 1;
        }
        *self.costs_by_venture.entry(venture_id.clone()).or_default().entry(estimated_cost).or_default() += 1;
    }

    /// Removes a task; returns whether it was there.
    pub fn remove(&mut self, venture_id: &Id, key: &QueueKey, tags: &[Arc<str>]) -> bool {
        for tag in tags {
            if let Some(tagged) = self.by_tag.get_mut(tag) {
                tagged.remove(key);
                if tagged.is_empty() {
                    self.by_tag.remove(tag);
                }
            }
        }
        let Some(queue) = self.by_venture.get_mut(venture_id) else { return false };
        let removed = queue.remove(key);
        if queue.is_empty() {
            self.by_venture.remove(venture_id);
        }
        let Some(cost) = removed else { return false };
        self.depth_by_priority[key.priority as usize] -= 1;
        self.forget_cost(venture_id, cost);
        true
    }

    fn forget_cost(&mut self, venture_id: &Id, cost: Money) {
        let Some(costs) = self.costs_by_venture.get_mut(venture_id) else { return };
        if let Some(n) = costs.get_mut(&cost) {
            *n -= 1;
            if *n == 0 {
                costs.remove(&cost);
            }
        }
        if costs.is_empty() {
            self.costs_by_venture.remove(venture_id);
        }
    }

    /// How many of the venture's queued tasks cost more than `room`: what its budget holds
    /// back. O(log n) plus one step per distinct cost held back.
    pub fn held_back(&self, venture_id: &Id, room: Money) -> usize {
        let Some(costs) = self.costs_by_venture.get(venture_id) else { return 0 };
        costs.range((std::ops::Bound::Excluded(room), std::ops::Bound::Unbounded)).map(|(_, n)| n).sum()
    }

    /// The queued tasks carrying the rarest of `tags`, in claim order, with venture and
    /// cost; empty when some tag is on no queued task.
    pub fn iter_rarest_tag<'a>(
        &'a self,
        tags: &[Arc<str>],
    ) -> impl Iterator<Item = (&'a QueueKey, &'a (Id, Money))> + 'a {
        let rarest = tags
            .iter()
            .map(|tag| self.by_tag.get(tag))
            .try_fold(None::<&BTreeMap<QueueKey, (Id, Money)>>, |best, tagged| {
                let tagged = tagged?;
                Some(Some(match best {
                    Some(best) if best.len() <= tagged.len() => best,
                    _ => tagged,
                }))
            })
            .flatten();
        rarest.into_iter().flat_map(|tagged| tagged.iter())
    }

    /// The venture's queued tasks in claim order, with their estimated costs.
    pub fn iter_venture<'a>(&'a self, venture_id: &Id) -> impl Iterator<Item = (&'a QueueKey, Money)> + 'a {
        self.by_venture.get(venture_id).into_iter().flat_map(|queue| queue.iter().map(|(k, c)| (k, *c)))
    }

    /// The first of the venture's queued tasks, in claim order, whose cost fits in `room`.
    pub fn first_fitting(&self, venture_id: &Id, room: Money) -> Option<&QueueKey> {
        self.iter_venture(venture_id).find(|(_, cost)| fits(*cost, room)).map(|(key, _)| key)
    }

    /// How many tasks the venture has queued.
    pub fn venture_len(&self, venture_id: &Id) -> usize {
        self.by_venture.get(venture_id).map_or(0, BTreeMap::len)
    }

    /// The venture's oldest queued task of each priority, with its cost: the first of each
    /// priority's run in claim order.
    pub fn oldest_by_priority<'a>(&'a self, venture_id: &Id) -> impl Iterator<Item = (&'a QueueKey, Money)> + 'a {
        let queue = self.by_venture.get(venture_id);
        Priority::ALL.iter().filter_map(move |priority| {
            let queue = queue?;
            let (key, cost) = queue.range(QueueKey::first_of(*priority)..).next()?;
            (key.priority == *priority).then_some((key, *cost))
        })
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

/// Whether a task of `cost` fits in a venture's `room`; exact, as money is.
pub fn fits(cost: Money, room: Money) -> bool {
    cost <= room
}

#[cfg(test)]
mod tests {
    use super::*;

    fn units(x: f64) -> Money {
        Money::from_decimal(x).unwrap()
    }

    fn key(priority: Priority, created_at: i64, id: &str) -> QueueKey {
        QueueKey { priority, created_at: Millis(created_at), id: id.into() }
    }

    #[test]
    fn orders_by_priority_then_age_then_id() {
        let venture: Id = "v".into();
        let mut index = QueuedIndex::default();
        index.insert(&venture, key(Priority::Low, 1, "a"), Money::ZERO, &[]);
        index.insert(&venture, key(Priority::Medium, 5, "b"), Money::ZERO, &[]);
        index.insert(&venture, key(Priority::High, 9, "c"), Money::ZERO, &[]);
        index.insert(&venture, key(Priority::Medium, 5, "a"), Money::ZERO, &[]);
        let order: Vec<&str> = index.iter_venture(&venture).map(|(k, _)| &*k.id).collect();
        assert_eq!(order, ["c", "a", "b", "a"]);
        assert_eq!(index.depth(Priority::Medium), 2);
        assert_eq!(index.len(), 4);
    }

    #[test]
    fn remove_is_exact_and_empties_the_venture() {
        let venture: Id = "v".into();
        let mut index = QueuedIndex::default();
        index.insert(&venture, key(Priority::High, 1, "a"), Money::ZERO, &[]);
        assert!(!index.remove(&venture, &key(Priority::Low, 1, "a"), &[]));
        assert!(index.remove(&venture, &key(Priority::High, 1, "a"), &[]));
        assert!(!index.remove(&venture, &key(Priority::High, 1, "a"), &[]));
        assert!(index.is_empty());
        assert_eq!(index.iter_venture(&venture).count(), 0);
    }

    #[test]
    fn first_fitting_skips_tasks_over_the_room() {
        let venture: Id = "v".into();
        let mut index = QueuedIndex::default();
        index.insert(&venture, key(Priority::High, 1, "big"), units(50.0), &[]);
        index.insert(&venture, key(Priority::Low, 1, "small"), units(1.1), &[]);
        assert_eq!(&*index.first_fitting(&venture, units(100.0)).unwrap().id, "big");
        assert_eq!(&*index.first_fitting(&venture, units(1.1)).unwrap().id, "small");
        assert!(index.first_fitting(&venture, units(1.0)).is_none());
        let room = units(9.9).saturating_add(units(1.1)).saturating_sub(units(9.9));
        assert!(fits(units(1.1), room), "exact: 9.9 + 1.1 - 9.9 leaves 1.1");
        assert_eq!(index.held_back(&venture, units(1.0)), 2);
        assert_eq!(index.held_back(&venture, Money::from_micros(-1)), 2, "overspent: every task is held back");
        assert_eq!(index.held_back(&venture, units(1.1)), 1);
    }

    #[test]
    fn tag_queries_walk_the_rarest_tag_in_claim_order() {
        let (a, b): (Id, Id) = ("a".into(), "b".into());
        let tags = |names: &[&str]| names.iter().map(|t| Arc::from(*t)).collect::<Vec<Arc<str>>>();
        let mut index = QueuedIndex::default();
        index.insert(&a, key(Priority::Low, 1, "t1"), Money::ZERO, &tags(&["common", "rare"]));
        index.insert(&b, key(Priority::High, 2, "t2"), Money::ZERO, &tags(&["common"]));
        index.insert(&b, key(Priority::High, 3, "t3"), Money::ZERO, &tags(&["common", "rare"]));
        let ids = |index: &QueuedIndex, wanted: &[&str]| -> Vec<String> {
            index.iter_rarest_tag(&tags(wanted)).map(|(k, _)| k.id.to_string()).collect()
        };
        assert_eq!(ids(&index, &["common"]), ["t2", "t3", "t1"]);
        assert_eq!(ids(&index, &["common", "rare"]), ["t3", "t1"], "walks the rarer tag");
        assert!(ids(&index, &["rare", "absent"]).is_empty());
        index.remove(&b, &key(Priority::High, 3, "t3"), &tags(&["common", "rare"]));
        assert_eq!(ids(&index, &["rare"]), ["t1"]);
        index.remove(&a, &key(Priority::Low, 1, "t1"), &tags(&["common", "rare"]));
        assert!(ids(&index, &["rare"]).is_empty());
    }
}
