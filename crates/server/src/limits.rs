//! Per-client limits (`[server.limits]`): a token bucket and a cap on requests in progress per bearer
//! token, and a lockout of a source address after repeated failed authentications. Kept in memory by
//! each hub process, timed by the hub's clock. Requests without a bearer token (health checks, the
//! OpenAPI document) pass untouched; the handlers refuse them if they need one.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use yilian_config::LimitsConfig;

use crate::AppState;
use crate::error::ApiError;

/// Entries kept before idle ones are dropped (a flood of made-up tokens cannot grow memory).
const MAX_ENTRIES: usize = 10_000;

type TokenKey = [u8; 16];

#[derive(Default)]
pub struct Limiter {
    clients: Mutex<HashMap<TokenKey, Client>>,
    addresses: Mutex<HashMap<IpAddr, Failures>>,
}

struct Client {
    /// Requests the token may still make now (refilled continuously).
    allowance: f64,
    refilled_at: i64,
    in_flight: u32,
}

struct Failures {
    count: u32,
    window_start: i64,
    locked_until: Option<i64>,
}

/// Why a request was refused, with the seconds after which a retry may succeed.
#[derive(Debug, PartialEq, Eq)]
enum Refusal {
    RateLimited(u64),
    Busy,
    LockedOut(u64),
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock leaves plain counters behind: still usable.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn ceil_secs(ms: i64) -> u64 {
    u64::try_from(ms.max(0)).unwrap_or(0).div_ceil(1000).max(1)
}

impl Limiter {
    fn locked(&self, ip: IpAddr, now: i64) -> Option<u64> {
        let addresses = lock(&self.addresses);
        let until = addresses.get(&ip)?.locked_until?;
        (until > now).then(|| ceil_secs(until - now))
    }

    /// Counts a failed authentication; locks the address out once there were too many.
    fn failed(&self, ip: IpAddr, cfg: &LimitsConfig, now: i64) {
        if cfg.auth_failures == 0 {
            return;
        }
        let window =
            i64::try_from(cfg.failure_window_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
        let mut addresses = lock(&self.addresses);
        if addresses.len() >= MAX_ENTRIES {
            addresses.retain(|_, f| f.locked_until.is_some_and(|u| u > now));
        }
        let f = addresses.entry(ip).or_insert(Failures {
            count: 0,
            window_start: now,
            locked_until: None,
        });
        if now.saturating_sub(f.window_start) > window {
            f.count = 0;
            f.window_start = now;
        }
        f.count += 1;
        if f.count >= cfg.auth_failures {
            let lockout = i64::try_from(cfg.lockout_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
            f.locked_until = Some(now.saturating_add(lockout));
            f.count = 0;
            f.window_start = now;
            tracing::warn!(address = %ip, "too many failed authentications: address locked out");
        }
    }

    /// Takes one request of the token's allowance and a place among its requests in progress.
    fn admit(&self, key: TokenKey, cfg: &LimitsConfig, now: i64) -> Result<(), Refusal> {
        let capacity = f64::from(cfg.burst.max(1));
        let per_ms = f64::from(cfg.requests_per_minute) / 60_000.0;
        let mut clients = lock(&self.clients);
        if clients.len() >= MAX_ENTRIES && !clients.contains_key(&key) {
            clients.retain(|_, c| c.in_flight > 0 || c.allowance < capacity);
        }
        let c = clients.entry(key).or_insert(Client {
            allowance: capacity,
            refilled_at: now,
            in_flight: 0,
        });
        if cfg.concurrent_requests > 0 && c.in_flight >= cfg.concurrent_requests {
            return Err(Refusal::Busy);
        }
        if cfg.requests_per_minute > 0 {
            let elapsed = now.saturating_sub(c.refilled_at).max(0) as f64;
            c.allowance = (c.allowance + elapsed * per_ms).min(capacity);
            c.refilled_at = now;
            if c.allowance < 1.0 {
                let wait_ms = ((1.0 - c.allowance) / per_ms).ceil() as i64;
                return Err(Refusal::RateLimited(ceil_secs(wait_ms)));
            }
            c.allowance -= 1.0;
        }
        c.in_flight += 1;
        Ok(())
    }

    fn done(&self, key: &TokenKey, forget: bool) {
        let mut clients = lock(&self.clients);
        if let Some(c) = clients.get_mut(key) {
            c.in_flight = c.in_flight.saturating_sub(1);
            if forget && c.in_flight == 0 {
                clients.remove(key);
            }
        }
    }
}

/// Releases the request's place when the response is done (or the client went away).
struct InFlight {
    limiter: Arc<Limiter>,
    key: TokenKey,
    forget: bool,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.limiter.done(&self.key, self.forget);
    }
}

fn bearer(req: &Request) -> Option<&str> {
    let v = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let t = v
        .strip_prefix("Bearer ")
        .or_else(|| v.strip_prefix("bearer "))?
        .trim();
    (!t.is_empty()).then_some(t)
}

fn refuse(r: Refusal) -> Response {
    let (code, message, retry) = match r {
        Refusal::RateLimited(s) => (
            "rate_limited",
            "请求过于频繁，请稍后再试。 Too many requests from this client: retry later.",
            Some(s),
        ),
        Refusal::Busy => (
            "too_many_concurrent",
            "同时进行的请求过多。 Too many requests of this client in progress at once.",
            Some(1),
        ),
        Refusal::LockedOut(s) => (
            "locked_out",
            "认证失败次数过多，此地址暂被锁定。 Too many failed authentications from this address: locked out for a while.",
            Some(s),
        ),
    };
    let mut resp = ApiError::new(StatusCode::TOO_MANY_REQUESTS, code, message).into_response();
    if let Some(s) = retry
        && let Ok(v) = HeaderValue::from_str(&s.to_string())
    {
        resp.headers_mut().insert(header::RETRY_AFTER, v);
    }
    resp
}

/// The middleware: lockout, rate and concurrency checks before the request; a 401 answer to a
/// presented token counts as a failed authentication of its source address.
pub async fn enforce(State(st): State<AppState>, req: Request, next: Next) -> Response {
    let Some(token) = bearer(&req) else {
        return next.run(req).await;
    };
    let cfg = &st.hub.config.server.limits;
    let now = st.hub.now().0;
    let ip = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    if let Some(ip) = ip
        && let Some(secs) = st.limiter.locked(ip, now)
    {
        return refuse(Refusal::LockedOut(secs));
    }
    let mut key = [0u8; 16];
    key.copy_from_slice(&Sha256::digest(token.as_bytes())[..16]);
    if let Err(r) = st.limiter.admit(key, cfg, now) {
        return refuse(r);
    }
    let mut guard = InFlight {
        limiter: st.limiter.clone(),
        key,
        forget: false,
    };
    let resp = next.run(req).await;
    if resp.status() == StatusCode::UNAUTHORIZED {
        // Not a client: nothing to remember of the token, and one more failure for the address.
        guard.forget = true;
        if let Some(ip) = ip {
            st.limiter.failed(ip, cfg, st.hub.now().0);
        }
    }
    drop(guard);
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> LimitsConfig {
        LimitsConfig {
            requests_per_minute: 60,
            burst: 2,
            concurrent_requests: 2,
            auth_failures: 3,
            failure_window_secs: 60,
            lockout_secs: 600,
        }
    }

    #[test]
    fn the_bucket_allows_a_burst_then_the_sustained_rate() {
        let l = Limiter::default();
        let k = [1u8; 16];
        assert_eq!(l.admit(k, &cfg(), 0), Ok(()));
        l.done(&k, false);
        assert_eq!(l.admit(k, &cfg(), 0), Ok(()));
        l.done(&k, false);
        assert_eq!(l.admit(k, &cfg(), 0), Err(Refusal::RateLimited(1)));
        // One a second: half a second is not enough, a second is.
        assert_eq!(l.admit(k, &cfg(), 500), Err(Refusal::RateLimited(1)));
        assert_eq!(l.admit(k, &cfg(), 1000), Ok(()));
        l.done(&k, false);
        // Another token has its own bucket.
        assert_eq!(l.admit([2u8; 16], &cfg(), 1000), Ok(()));
        // 0 turns the rate limit off.
        let off = LimitsConfig {
            requests_per_minute: 0,
            ..cfg()
        };
        for _ in 0..100 {
            assert_eq!(l.admit([3u8; 16], &off, 0), Ok(()));
            l.done(&[3u8; 16], false);
        }
    }

    #[test]
    fn requests_in_progress_are_capped_and_released() {
        let l = Limiter::default();
        let k = [1u8; 16];
        let c = LimitsConfig {
            requests_per_minute: 0,
            ..cfg()
        };
        assert_eq!(l.admit(k, &c, 0), Ok(()));
        assert_eq!(l.admit(k, &c, 0), Ok(()));
        assert_eq!(l.admit(k, &c, 0), Err(Refusal::Busy));
        l.done(&k, false);
        assert_eq!(l.admit(k, &c, 0), Ok(()));
    }

    #[test]
    fn failures_in_a_window_lock_the_address_out_for_a_while() {
        let l = Limiter::default();
        let ip: IpAddr = "10.1.2.3".parse().unwrap();
        l.failed(ip, &cfg(), 0);
        l.failed(ip, &cfg(), 1_000);
        assert_eq!(l.locked(ip, 1_000), None);
        // The window restarts: two old failures and one new one do not lock.
        l.failed(ip, &cfg(), 70_000);
        assert_eq!(l.locked(ip, 70_000), None);
        l.failed(ip, &cfg(), 71_000);
        l.failed(ip, &cfg(), 72_000);
        assert_eq!(l.locked(ip, 72_000), Some(600));
        assert_eq!(l.locked(ip, 72_000 + 599_500), Some(1));
        assert_eq!(l.locked(ip, 72_000 + 600_000), None);
        assert_eq!(l.locked("10.1.2.4".parse().unwrap(), 72_000), None);
    }
}
