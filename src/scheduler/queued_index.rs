//! The priority index of queued tasks, kept per venture.
//!
//! Each venture's queued tasks sit in a `BTreeMap` ordered by claim order (priority, then
//! oldest `createdAt`, then id), so insert, remove and "best task of this venture" are
//! O(log n). The scheduler picks across ventures with a second, much smaller ordered set
//! of each venture's best eligible task (see `SchedulerState::refresh_candidate`).

use std::collections::{BTreeMap, BTreeSet, HashMap};
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
    /// Each venture's queued tasks by cost, each cost's in claim order: how many tasks a
    /// budget holds back is a range count, and the first task that fits a nearly spent
    /// budget is the first of some cost within it, never a walk past the ones that do not.
    by_cost: HashMap<Id, BTreeMap<Money, BTreeSet<QueueKey>>>,
    by_tag: HashMap<Arc<str>, BTreeMap<QueueKey, (Id, Money)>>,
    depth_by_priority: [usize; 3],
}

impl QueuedIndex {
    pub fn insert(&mut self, venture_id: &Id, key: QueueKey, estimated_cost: Money, tags: &[Arc<str>]) {
        for tag in tags {
            self.by_tag.entry(tag.clone()).or_default().insert(key.clone(), (venture_id.clone(), estimated_cost));
        }
        let priority = key.priority;
        let previous = self.by_venture.entry(venture_id.clone()).or_default().insert(key.clone(), estimated_cost);
        if let Some(previous) = previous {
            self.forget_cost(venture_id, &key, previous);
        } else {
            self.depth_by_priority[priority as usize] += 1;
        }
        self.by_cost.entry(venture_id.clone()).or_default().entry(estimated_cost).or_default().insert(key);
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
        self.forget_cost(venture_id, key, cost);
        true
    }

    fn forget_cost(&mut self, venture_id: &Id, key: &QueueKey, cost: Money) {
        let Some(costs) = self.by_cost.get_mut(venture_id) else { return };
        if let Some(keys) = costs.get_mut(&cost) {
            keys.remove(key);
            if keys.is_empty() {
                costs.remove(&cost);
            }
        }
        if costs.is_empty() {
            self.by_cost.remove(venture_id);
        }
    }

    /// How many of the venture's queued tasks cost more than `room`: what its budget holds
    /// back. O(log n) plus one step per distinct cost held back.
    pub fn held_back(&self, venture_id: &Id, room: Money) -> usize {
        let Some(costs) = self.by_cost.get(venture_id) else { return 0 };
        costs.range((std::ops::Bound::Excluded(room), std::ops::Bound::Unbounded)).map(|(_, keys)| keys.len()).sum()
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

    /// The first of the venture's queued tasks, in claim order, whose cost fits in `room`:
    /// the venture's first task when it fits (the usual case, O(log n)), else the earliest
    /// of the first tasks of each cost within `room`, O(log n) per such cost. Tasks that do
    /// not fit are never walked, however many there are.
    pub fn first_fitting(&self, venture_id: &Id, room: Money) -> Option<&QueueKey> {
        let (first, cost) = self.by_venture.get(venture_id)?.first_key_value()?;
        if fits(*cost, room) {
            return Some(first);
        }
        let costs = self.by_cost.get(venture_id)?;
        costs.range(..=room).filter_map(|(_, keys)| keys.first()).min()
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
    fn first_fitting_is_the_first_in_claim_order_that_fits_whatever_the_mix() {
        // Against the definition (a walk in claim order), over pseudo-random inserts and
        // removes of tasks of a few costs, at every room.
        let venture: Id = "v".into();
        let mut index = QueuedIndex::default();
        let mut seed = 7u64;
        let mut next = move || {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            seed >> 33
        };
        let priorities = [Priority::High, Priority::Medium, Priority::Low];
        let mut keys = Vec::new();
        for i in 0..400 {
            let k = key(priorities[(next() % 3) as usize], (next() % 50) as i64, &format!("t{i}"));
            if next() % 4 == 0 && !keys.is_empty() {
                let gone: QueueKey = keys.swap_remove((next() as usize) % keys.len());
                assert!(index.remove(&venture, &gone, &[]));
            }
            index.insert(&venture, k.clone(), units((next() % 6) as f64), &[]);
            keys.push(k);
            for room in [-1.0, 0.0, 1.0, 2.5, 5.0, 9.0] {
                let room = if room < 0.0 { Money::from_micros(-1) } else { units(room) };
                let walked = index.iter_venture(&venture).find(|(_, cost)| fits(*cost, room)).map(|(k, _)| k);
                assert_eq!(index.first_fitting(&venture, room), walked, "room {room}");
                let over = index.iter_venture(&venture).filter(|(_, cost)| !fits(*cost, room)).count();
                assert_eq!(index.held_back(&venture, room), over, "room {room}");
            }
        }
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
