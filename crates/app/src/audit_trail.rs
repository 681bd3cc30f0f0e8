//! Reading the audit trail (审计): the auditor's export of who did what to which record, with each
//! event's place in the hash chain. The reading itself is audited.

use yilian_domain::UnixMillis;

use crate::access::{Action, Principal, require};
use crate::error::AppError;
use crate::hub::Hub;
use crate::ports::AuditRecord;

/// Most events one export returns.
pub const MAX_EXPORT: i64 = 100_000;

impl Hub {
    /// Events with `from <= at < to` (default: the last 24 hours), oldest first, at most `limit`
    /// (≤ [`MAX_EXPORT`]). Audited as `audit.read` with the period and the count.
    pub async fn audit_trail(
        &self,
        who: &Principal,
        from: Option<UnixMillis>,
        to: Option<UnixMillis>,
        limit: Option<i64>,
    ) -> Result<Vec<AuditRecord>, AppError> {
        require(who, Action::ReadAudit)?;
        let to = to.unwrap_or_else(|| self.now().plus_secs(1));
        let from = from.unwrap_or_else(|| to.plus_days(-1));
        if from.0 >= to.0 {
            return Err(AppError::Invalid("from must be before to".into()));
        }
        let limit = limit.unwrap_or(10_000);
        if !(1..=MAX_EXPORT).contains(&limit) {
            return Err(AppError::Invalid(format!(
                "limit must be between 1 and {MAX_EXPORT}"
            )));
        }
        let events = self.catalog.audit_trail(from, to, limit).await?;
        self.audit(
            who,
            "audit.read",
            "audit_trail",
            &format!("{}..{}", from.0, to.0),
            None,
            "ok",
            format!("{} events", events.len()),
        )
        .await?;
        Ok(events)
    }
}
