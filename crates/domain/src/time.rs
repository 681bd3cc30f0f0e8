//! Time as the domain sees it: milliseconds since the Unix epoch, UTC. Formatting happens at the edges.

/// Milliseconds since 1970-01-01T00:00:00Z.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UnixMillis(pub i64);

impl UnixMillis {
    pub fn plus_secs(self, secs: i64) -> Self {
        UnixMillis(self.0.saturating_add(secs.saturating_mul(1000)))
    }
    pub fn plus_minutes(self, minutes: i64) -> Self {
        self.plus_secs(minutes.saturating_mul(60))
    }
    pub fn plus_days(self, days: i64) -> Self {
        self.plus_secs(days.saturating_mul(86_400))
    }
}
