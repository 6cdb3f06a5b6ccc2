//! Subscriptions (DESIGN §7): `secretEvents` and `dependentEvents`, for those who may
//! inspect (admins, inspectors) and for a RUNTIME account about what is bound to it (§9),
//! filtered to the subscriber's organization. Events are built from
//! the [`crate::events`] feed of [`crate::domain::events::Notice`]s; what a notice does not
//! carry (the resource, the principal) is loaded when the event is delivered. Never a value.
use std::{collections::HashSet, sync::Arc};

use async_graphql::futures_util::stream;
use async_graphql::{
    Context, Enum, ErrorExtensions, ID, Result, SimpleObject, Subscription, futures_util::Stream,
};
use chrono::{DateTime, Utc};
use tokio::sync::broadcast::{Receiver, error::RecvError};
use uuid::Uuid;

use super::{
    dependents::{Dependent, DependentState},
    guard::{RoleGuard, actor, app},
    identity::{Principal, load_principal},
    ids,
};
use crate::{
    domain::{
        Permission, Role, SecretName, dependents,
        events::{self, Change, Notice},
        resources,
    },
    events::Delivery,
};

/// The `extensions.code` of the error that ends a subscription which missed events.
pub const EVENTS_MISSED: &str = crate::error::Code::EventsMissed.as_str();

#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
#[graphql(remote = "events::SecretEventKind")]
pub enum SecretEventKind {
    /// Created, at version 1.
    Created,
    /// A new value (`version` is the new version), description or rotation period.
    Updated,
    /// Deleted: scheduled for purge at the end of its recovery window (or purged at once,
    /// then `PURGED` follows).
    Deleted,
    /// Disabled: its values are refused until it is enabled.
    Disabled,
    Enabled,
    /// Restored from `DELETED`, with every version.
    Restored,
    /// Destroyed with every version and data key.
    Purged,
    /// A new version (`version`) holding the value of an earlier one.
    RolledBack,
    /// Its rotation period has passed since its value last changed; once per due date.
    RotationDue,
}

/// Something happened to a secret. Never its value.
#[derive(SimpleObject)]
#[graphql(complex)]
pub struct SecretEvent {
    kind: SecretEventKind,
    secret_name: String,
    /// The secret's version after the change (for `DELETED`, the last one).
    version: Option<i32>,
    occurred_at: DateTime<Utc>,
    #[graphql(skip)]
    principal_id: Option<Uuid>,
}

#[async_graphql::ComplexObject]
impl SecretEvent {
    /// Who made the change.
    async fn principal(&self, ctx: &Context<'_>) -> Result<Option<Principal>> {
        load_principal(ctx, self.principal_id).await
    }
}

/// A dependent changed state because of a change to a secret or a deploy.
#[derive(SimpleObject)]
pub struct DependentEvent {
    secret_name: String,
    /// Null when the dependent is new.
    previous_state: Option<DependentState>,
    /// The dependent as it stands after the change.
    dependent: Dependent,
    occurred_at: DateTime<Utc>,
}

#[derive(Default)]
pub struct SubscriptionRoot;

#[Subscription(name = "Subscription")]
impl SubscriptionRoot {
    /// Changes to the organization's secrets, or to those named, in commit order. A
    /// RUNTIME account follows secrets that a resource bound to it references (`names`
    /// required), and hears nothing more of one once no bound resource references it.
    #[graphql(guard = "RoleGuard::new(Permission::WatchResources)")]
    async fn secret_events(
        &self,
        ctx: &Context<'_>,
        names: Option<Vec<String>>,
    ) -> Result<impl Stream<Item = Result<SecretEvent>> + use<>> {
        let principal = actor(ctx)?.principal;
        let org_id = principal.org_id;
        let keys = match names {
            Some(names) => Some(name_keys(&names)?),
            None => None,
        };
        let db = app(ctx)?.db.clone();
        // A RUNTIME account: only names its bound resources reference, checked now and
        // at every event (it may be unbound, or the reference removed, meanwhile).
        let runtime = principal.role == Role::Runtime;
        if runtime {
            let visible = resources::Visible::to(&principal);
            let asked = keys.clone().unwrap_or_default();
            let referenced = resources::referenced_names(db.read(), visible, &asked)
                .await
                .map_err(|e| e.extend())?;
            if asked.is_empty() || referenced.len() != asked.len() {
                return Err(crate::Error::Denied(
                    "a RUNTIME account follows the events of secrets that a resource bound \
                     to it references: name them in `names`"
                        .into(),
                )
                .extend());
            }
        }
        let visible = resources::Visible::to(&principal);
        let feed = db.events().subscribe();
        Ok(deliveries(feed, move |notice| {
            let (keys, db) = (keys.clone(), db.clone());
            async move {
                let Change::Secret {
                    kind,
                    version,
                    principal_id,
                    ..
                } = notice.change
                else {
                    return None;
                };
                if notice.org_id != org_id || !wanted(keys.as_ref(), &notice.secret_name) {
                    return None;
                }
                if runtime {
                    let key = HashSet::from([notice.secret_name.to_ascii_lowercase()]);
                    match resources::referenced_names(db.read(), visible, &key).await {
                        Ok(found) if !found.is_empty() => {}
                        Ok(_) => return None,
                        Err(e) => return Some(Err(e.extend())),
                    }
                }
                Some(Ok(SecretEvent {
                    kind: kind.into(),
                    secret_name: notice.secret_name.clone(),
                    version,
                    occurred_at: notice.occurred_at,
                    principal_id,
                }))
            }
        }))
    }

    /// Dependents whose state changed: of one secret, of one resource, or all of the
    /// organization's. A RUNTIME account watches a resource bound to it (`resourceId`),
    /// and hears nothing more once it is unbound.
    #[graphql(guard = "RoleGuard::new(Permission::WatchResources)")]
    async fn dependent_events(
        &self,
        ctx: &Context<'_>,
        secret_name: Option<String>,
        resource_id: Option<ID>,
    ) -> Result<impl Stream<Item = Result<DependentEvent>> + use<>> {
        let principal = actor(ctx)?.principal;
        let org_id = principal.org_id;
        let visible = resources::Visible::to(&principal);
        let keys = match secret_name {
            Some(name) => Some(name_keys(&[name])?),
            None => None,
        };
        let resource = match resource_id {
            Some(id) => Some(ids::decode_as(&id, ids::RESOURCE).map_err(|e| e.extend())?),
            None => None,
        };
        let db = app(ctx)?.db.clone();
        if principal.role == Role::Runtime {
            let bound = match resource {
                Some(id) => resources::find_visible(db.read(), visible, id)
                    .await
                    .map_err(|e| e.extend())?,
                None => None,
            };
            if bound.is_none() {
                return Err(crate::Error::Denied(
                    "a RUNTIME account watches the dependent events of a resource bound to \
                     it: pass that resource's resourceId"
                        .into(),
                )
                .extend());
            }
        }
        let feed = db.events().subscribe();
        Ok(deliveries(feed, move |notice| {
            let (db, keys) = (db.clone(), keys.clone());
            async move {
                let Change::Dependent {
                    resource_id,
                    field,
                    previous,
                    state,
                    deployed_version,
                    deployed_at,
                } = &notice.change
                else {
                    return None;
                };
                if notice.org_id != org_id
                    || !wanted(keys.as_ref(), &notice.secret_name)
                    || resource.is_some_and(|id| id != *resource_id)
                {
                    return None;
                }
                // Seen through the subscriber's eyes at every event: an account unbound
                // since hears nothing more.
                let row = match resources::find_visible(db.read(), visible, *resource_id).await {
                    Ok(Some(row)) => row,
                    // Deleted since: nothing left to describe.
                    Ok(None) => return None,
                    Err(e) => return Some(Err(e.extend())),
                };
                let dependent = dependents::Dependent {
                    resource: row,
                    secret_name_key: notice.secret_name.to_ascii_lowercase(),
                    field: field.clone(),
                    state: *state,
                    deployed_version: *deployed_version,
                    deployed_at: *deployed_at,
                };
                Some(Ok(DependentEvent {
                    secret_name: notice.secret_name.clone(),
                    previous_state: previous.map(Into::into),
                    dependent: dependent.into(),
                    occurred_at: notice.occurred_at,
                }))
            }
        }))
    }
}

/// Case-folded keys of the names asked for (a bad name is `BAD_USER_INPUT`).
fn name_keys(names: &[String]) -> Result<HashSet<String>> {
    names
        .iter()
        .map(|name| SecretName::parse(name).map(|n| n.key()))
        .collect::<crate::Result<_>>()
        .map_err(|e| e.extend())
}

fn wanted(keys: Option<&HashSet<String>>, secret_name: &str) -> bool {
    keys.is_none_or(|keys| SecretName::parse(secret_name).is_ok_and(|n| keys.contains(&n.key())))
}

/// The events `select` makes of a feed, in order. A subscriber that fell too far behind,
/// or whose feed was interrupted, gets an `EVENTS_MISSED` error and its subscription ends:
/// it should re-read what it watches and subscribe again.
fn deliveries<T, F, Fut>(feed: Receiver<Delivery>, select: F) -> impl Stream<Item = Result<T>>
where
    F: Fn(Arc<Notice>) -> Fut,
    Fut: Future<Output = Option<Result<T>>>,
{
    let select = Arc::new(select);
    stream::unfold(Some(feed), move |feed| {
        let select = select.clone();
        async move {
            let mut feed = feed?;
            loop {
                match feed.recv().await {
                    Ok(Delivery::Notice(notice)) => {
                        if let Some(event) = select(notice).await {
                            return Some((event, Some(feed)));
                        }
                    }
                    Ok(Delivery::Gap) => {
                        return Some((Err(missed("the event feed was interrupted")), None));
                    }
                    Err(RecvError::Lagged(count)) => {
                        let why = format!("this subscriber fell {count} events behind");
                        return Some((Err(missed(&why)), None));
                    }
                    Err(RecvError::Closed) => return None,
                }
            }
        }
    })
}

fn missed(why: &str) -> async_graphql::Error {
    async_graphql::Error::new(format!(
        "{why} and missed events; re-read what you watch, then subscribe again"
    ))
    .extend_with(|_, ext| ext.set("code", EVENTS_MISSED))
}

#[cfg(test)]
mod tests {
    use async_graphql::futures_util::StreamExt;
    use chrono::Utc;
    use tokio::sync::broadcast;

    use super::*;
    use crate::domain::events::SecretEventKind;

    fn notice(name: &str) -> Delivery {
        Delivery::Notice(Arc::new(Notice::secret(
            Uuid::nil(),
            (Uuid::nil(), name),
            SecretEventKind::Updated,
            Some(2),
            None,
            Utc::now(),
        )))
    }

    /// The names delivered, then the code of the error that ended the stream, if any.
    async fn run(feed: Receiver<Delivery>) -> (Vec<String>, Option<String>) {
        let stream = deliveries(feed, |n| async move { Some(Ok(n.secret_name.clone())) });
        let items: Vec<Result<String>> = stream.collect().await;
        let mut names = Vec::new();
        let mut ended_by = None;
        for item in items {
            match item {
                Ok(name) => names.push(name),
                Err(e) => {
                    let code = e.extensions.and_then(|x| x.get("code").cloned());
                    ended_by = Some(code.map_or_else(String::new, |c| c.to_string()));
                }
            }
        }
        (names, ended_by)
    }

    #[tokio::test]
    async fn a_subscriber_that_fell_behind_is_told_and_dropped() {
        let (sender, feed) = broadcast::channel(4);
        for i in 0..10 {
            sender.send(notice(&format!("S{i}"))).expect("a subscriber");
        }
        drop(sender);
        let (names, ended_by) = run(feed).await;
        assert_eq!(names, Vec::<String>::new(), "nothing after the loss");
        assert_eq!(ended_by.as_deref(), Some("\"EVENTS_MISSED\""));
    }

    #[tokio::test]
    async fn an_interrupted_feed_ends_the_subscription_after_what_arrived() {
        let (sender, feed) = broadcast::channel(16);
        sender.send(notice("BEFORE")).expect("a subscriber");
        sender.send(Delivery::Gap).expect("a subscriber");
        sender.send(notice("AFTER")).expect("a subscriber");
        let (names, ended_by) = run(feed).await;
        assert_eq!(names, ["BEFORE"]);
        assert_eq!(ended_by.as_deref(), Some("\"EVENTS_MISSED\""));
    }

    #[tokio::test]
    async fn a_closed_feed_ends_the_subscription_quietly() {
        let (sender, feed) = broadcast::channel(16);
        sender.send(notice("ONLY")).expect("a subscriber");
        drop(sender);
        assert_eq!(run(feed).await, (vec!["ONLY".to_owned()], None));
    }
}
