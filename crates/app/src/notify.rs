//! Notifications: when an exam is routed urgent or stat, raised by the site, or escalated, the readers of
//! the pool that must act are told (those on duty, when the pool keeps a rota); an urgent exam offered
//! to one reader tells that reader — a row they poll (`GET /api/v1/notifications`) and, when a webhook is
//! configured, a JSON POST the server's delivery job sends. No patient identifiers are in either.

use yilian_domain::{ExamId, PoolId, Priority, UnixMillis};
use yilian_policy::ExamNeeds;

use crate::access::{Action, Principal, require};
use crate::error::AppError;
use crate::hub::Hub;
use crate::ports::{Notification, PortError};

/// Webhook deliveries give up after this many failed attempts (state `failed`).
pub const MAX_WEBHOOK_ATTEMPTS: i64 = 5;

/// The most notifications one poll returns.
pub const MAX_NOTIFICATIONS: i64 = 200;

impl Hub {
    /// A notification to the readers of `pool` on duty and qualified for the exam (`needs`); to the
    /// whole pool when it keeps no rota or nobody qualified is on duty (the message says so).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn notification(
        &self,
        kind: &str,
        exam_id: &ExamId,
        pool: &PoolId,
        priority: Priority,
        due_at: UnixMillis,
        needs: &ExamNeeds,
        message: impl Into<String>,
    ) -> Notification {
        let (recipients, note) = self.notification_recipients(pool, needs);
        let mut message = message.into();
        if let Some(note) = note {
            message.push_str(note);
        }
        let mut n = self.notification_to(kind, exam_id, pool, priority, due_at, message);
        n.recipients = recipients;
        n
    }

    /// A notification stamped now for the whole pool (the caller may address it), pending webhook
    /// delivery when a webhook is configured.
    pub(crate) fn notification_to(
        &self,
        kind: &str,
        exam_id: &ExamId,
        pool: &PoolId,
        priority: Priority,
        due_at: UnixMillis,
        message: impl Into<String>,
    ) -> Notification {
        Notification {
            notification_id: ulid::Ulid::new().to_string(),
            at: self.now(),
            kind: kind.into(),
            exam_id: exam_id.clone(),
            pool: pool.clone(),
            priority,
            due_at,
            message: message.into(),
            webhook_state: if self.config.notifications.webhook_url.is_some() {
                "pending"
            } else {
                "none"
            }
            .into(),
            webhook_attempts: 0,
            recipients: Vec::new(),
        }
    }

    /// The caller's pools' notifications after `after` (a previous `notification_id`), oldest first:
    /// those for the whole pool and those addressed to the caller (on duty when it was raised).
    pub async fn notifications(
        &self,
        who: &Principal,
        after: Option<&str>,
    ) -> Result<Vec<Notification>, AppError> {
        require(who, Action::ReadNotifications)?;
        Ok(self
            .catalog
            .notifications_for(&who.pools, &who.username, after, MAX_NOTIFICATIONS)
            .await?)
    }

    /// Notifications waiting for webhook delivery (the server's job sends them).
    pub async fn pending_webhooks(&self, limit: i64) -> Result<Vec<Notification>, PortError> {
        self.catalog.pending_webhooks(limit).await
    }

    /// Records a delivery attempt: `sent`, or another failure (`failed` after the last attempt).
    pub async fn webhook_attempted(&self, n: &Notification, ok: bool) -> Result<(), PortError> {
        let attempts = n.webhook_attempts + 1;
        let state = if ok {
            "sent"
        } else if attempts >= MAX_WEBHOOK_ATTEMPTS {
            "failed"
        } else {
            "pending"
        };
        self.catalog
            .set_webhook_state(&n.notification_id, state, attempts)
            .await
    }
}
