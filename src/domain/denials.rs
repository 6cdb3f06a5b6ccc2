//! A bound on the audit rows refusals write: at most [`ROWS_PER_MINUTE`] per principal per
//! minute. A request's refusals are audited as they happen (a row per refused field, with
//! its count, see [`super::audit::record_denials`]) until the principal has written that
//! many rows in the current minute; the rest of the minute's refusals are folded into
//! counts kept in memory and written as one row per principal and minute
//! (`action: "denials_folded"`, `detail: {"role", "count", "fields": {field: count}, "minute"}`)
//! once the minute is over — or at shutdown. A principal probing in a loop costs the audit
//! log a bounded number of rows, and no refusal goes uncounted.
use std::{
    collections::HashMap,
    sync::{Mutex, PoisonError},
};

use chrono::{DateTime, TimeZone, Utc};
use uuid::Uuid;

use super::Principal;

/// Rows of refusals a principal may write in one minute before the rest are folded.
pub const ROWS_PER_MINUTE: usize = 20;

/// Refusals folded over one minute for one principal.
#[derive(Clone, Debug)]
pub struct Folded {
    pub principal: Principal,
    /// The start of the minute.
    pub minute: DateTime<Utc>,
    /// Refused fields with their counts, in first-refused order.
    pub fields: Vec<(String, u64)>,
}

#[derive(Debug)]
struct Window {
    minute: i64,
    rows: usize,
    folded: Option<Folded>,
}

/// The per-principal minute budgets of one server process.
#[derive(Debug, Default)]
pub struct DenialBudget {
    windows: Mutex<HashMap<Uuid, Window>>,
    /// Folded windows whose minute is over, waiting to be written.
    due: Mutex<Vec<Folded>>,
}

impl DenialBudget {
    /// Of `fields` refused to `principal` at `now`, those to audit now (at most `rows` of
    /// them make a row each); the rest are folded into the minute's counts.
    pub fn admit(
        &self,
        principal: &Principal,
        fields: Vec<(String, u64)>,
        rows: usize,
        now: DateTime<Utc>,
    ) -> Vec<(String, u64)> {
        let minute = now.timestamp().div_euclid(60);
        let mut windows = lock(&self.windows);
        let window = windows.entry(principal.id).or_insert(Window {
            minute,
            rows: 0,
            folded: None,
        });
        if window.minute != minute {
            if let Some(folded) = window.folded.take() {
                lock(&self.due).push(folded);
            }
            *window = Window {
                minute,
                rows: 0,
                folded: None,
            };
        }
        if window.rows + rows <= ROWS_PER_MINUTE {
            window.rows += rows;
            return fields;
        }
        let folded = window.folded.get_or_insert_with(|| Folded {
            principal: principal.clone(),
            minute: Utc.timestamp_opt(minute * 60, 0).single().unwrap_or(now),
            fields: Vec::new(),
        });
        for (field, count) in fields {
            match folded.fields.iter_mut().find(|(name, _)| *name == field) {
                Some((_, total)) => *total += count,
                None => folded.fields.push((field, count)),
            }
        }
        Vec::new()
    }

    /// The folded windows whose minute is over at `now` (all of them when `now` is
    /// `None`, at shutdown), taken out to be written; windows with nothing folded are
    /// forgotten once their minute is over.
    pub fn take_due(&self, now: Option<DateTime<Utc>>) -> Vec<Folded> {
        let current = now.map(|now| now.timestamp().div_euclid(60));
        let mut due = std::mem::take(&mut *lock(&self.due));
        lock(&self.windows).retain(|_, window| {
            if current == Some(window.minute) {
                return true;
            }
            due.extend(window.folded.take());
            false
        });
        due
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Nothing here holds an invariant a panic could break half-way.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{PrincipalKind, Role};

    fn viewer() -> Principal {
        Principal {
            id: Uuid::from_u128(7),
            org_id: Uuid::from_u128(1),
            kind: PrincipalKind::ServiceAccount,
            name: "probe".to_owned(),
            role: Role::Viewer,
        }
    }

    fn at(seconds: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_800_000_020 + seconds, 0)
            .single()
            .expect("a time")
    }

    #[test]
    fn rows_past_the_budget_are_folded_and_handed_over_when_the_minute_ends() {
        let budget = DenialBudget::default();
        let principal = viewer();
        // at(0) is 20 s into a minute.
        let mut written = 0;
        for i in 0..30 {
            let fields = vec![("secrets".to_owned(), 1), ("secretValue".to_owned(), 2)];
            written += budget.admit(&principal, fields, 2, at(i)).len();
        }
        assert_eq!(written, ROWS_PER_MINUTE);
        assert!(
            budget.take_due(Some(at(30))).is_empty(),
            "the minute is not over"
        );
        let due = budget.take_due(Some(at(45)));
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].minute, at(-20));
        assert_eq!(
            due[0].fields,
            vec![("secrets".to_owned(), 20), ("secretValue".to_owned(), 40)]
        );
        // A new minute, a new budget.
        let fields = vec![("secrets".to_owned(), 1)];
        assert_eq!(budget.admit(&principal, fields, 1, at(50)).len(), 1);
        assert!(budget.take_due(None).is_empty(), "nothing folded");
    }

    #[test]
    fn a_window_folded_when_the_next_minute_starts_is_not_lost() {
        let budget = DenialBudget::default();
        let principal = viewer();
        for i in 0..25 {
            budget.admit(&principal, vec![("secrets".to_owned(), 1)], 1, at(i));
        }
        // The next minute's first refusal comes before any flush.
        budget.admit(&principal, vec![("secrets".to_owned(), 1)], 1, at(41));
        let due = budget.take_due(None);
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].fields, vec![("secrets".to_owned(), 5)]);
    }
}
