//! The hub: configuration plus the ports, and the small services every use case shares
//! (patient keys, audit, signing keys).

use std::sync::{Arc, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use yilian_config::{Config, RoutingConfig};
use yilian_domain::{LocalPatientId, PatientKey, ResidentId, UnixMillis, Username};
use yilian_policy::Rota;
use yilian_signing::{
    Algorithm, HUB_KEY_OWNER, Passphrase, PublicKeyRecord, SignatureBlock, SignedDocument,
    canonicalize, format_time, parse_time,
};

use crate::access::Principal;
use crate::error::AppError;
use crate::metrics::HubCounters;
use crate::ports::{AuditEvent, Blobs, Catalog, Clock, KeyVault, PortError, TimeStamper, VaultKey};
use crate::render_cache::RenderCache;
use crate::timestamp::HubClockStamper;

/// The wall clock.
#[derive(Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> UnixMillis {
        UnixMillis(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_millis() as i64)
                .unwrap_or(0),
        )
    }
}

#[derive(Clone)]
pub struct Hub {
    pub config: Arc<Config>,
    pub catalog: Arc<dyn Catalog>,
    pub blobs: Arc<dyn Blobs>,
    pub vault: Arc<dyn KeyVault>,
    pub clock: Arc<dyn Clock>,
    /// Countersigns every signature with a trusted time (the hub's clock key unless replaced).
    pub stamper: Arc<dyn TimeStamper>,
    /// Rendered frames and thumbnails, sized by `server.render_cache_bytes`.
    pub render_cache: Arc<RenderCache>,
    /// This process's ingest and look-up counters (`/metrics`).
    pub counters: Arc<HubCounters>,
    /// The routing rules and `[routing.ecg]` in force: `config.routing` at start, swapped whole by a
    /// reload (SIGHUP or the admin endpoint). Read it with [`Hub::routing`], never `config.routing`'s
    /// rules, so every decision uses one consistent rule set.
    routing: Arc<RwLock<Arc<RoutingConfig>>>,
    /// The on-duty calendar in force (`[rota]`), swapped with the routing rules by a reload.
    rota: Arc<RwLock<Arc<Rota>>>,
    /// This process among the replicas on one catalog: lease holder name, signal bookkeeping.
    pub(crate) replica: Arc<crate::coordination::ReplicaState>,
}

impl Hub {
    pub fn new(
        config: Arc<Config>,
        catalog: Arc<dyn Catalog>,
        blobs: Arc<dyn Blobs>,
        vault: Arc<dyn KeyVault>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Hub {
            render_cache: Arc::new(RenderCache::new(config.server.render_cache_bytes)),
            counters: Arc::new(HubCounters::default()),
            routing: Arc::new(RwLock::new(Arc::new(config.routing.clone()))),
            rota: Arc::new(RwLock::new(Arc::new(config.rota.clone()))),
            replica: Arc::new(crate::coordination::ReplicaState::new()),
            stamper: Arc::new(HubClockStamper::new(
                Arc::clone(&vault),
                Arc::clone(&clock),
                key_algorithm(&config),
            )),
            config,
            catalog,
            blobs,
            vault,
            clock,
        }
    }

    /// Replaces the time stamper (a GB/T 20520 / RFC 3161 service instead of the hub clock key).
    pub fn with_time_stamper(mut self, stamper: Arc<dyn TimeStamper>) -> Self {
        self.stamper = stamper;
        self
    }

    pub fn now(&self) -> UnixMillis {
        self.clock.now()
    }

    /// The routing rules and ECG alert limits in force now.
    pub fn routing(&self) -> Arc<RoutingConfig> {
        // A poisoned lock still holds a whole rule set: the swap is a single pointer store.
        match self.routing.read() {
            Ok(g) => Arc::clone(&g),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    /// The on-duty calendar in force.
    pub fn rota(&self) -> Arc<Rota> {
        match self.rota.read() {
            Ok(g) => Arc::clone(&g),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    /// Puts a validated rule set and calendar in force; decisions after this see only them.
    pub(crate) fn swap_routing(&self, next: RoutingConfig, rota: Rota) {
        let next = Arc::new(next);
        match self.routing.write() {
            Ok(mut g) => *g = next,
            Err(poisoned) => *poisoned.into_inner() = next,
        }
        let rota = Arc::new(rota);
        match self.rota.write() {
            Ok(mut g) => *g = rota,
            Err(poisoned) => *poisoned.into_inner() = rota,
        }
    }

    /// The alliance patient key: keyed hash of the resident ID when the local ID is one, else of the
    /// local identifier with its issuer. The resident ID itself is never stored.
    pub fn patient_key(&self, local: &LocalPatientId) -> PatientKey {
        match ResidentId::parse(&local.id) {
            Some(rid) => self.keyed_hash(&format!("rid:{}", rid.as_str())),
            None => self.keyed_hash(&format!("local:{}\n{}", local.issuer, local.id)),
        }
    }

    fn keyed_hash(&self, input: &str) -> PatientKey {
        let secret = self
            .config
            .alliance
            .patient_key_secret
            .as_deref()
            .unwrap_or_default();
        #[allow(clippy::expect_used)]
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes())
            .expect("HMAC accepts keys of any length");
        mac.update(input.as_bytes());
        PatientKey(hex::encode(mac.finalize().into_bytes()))
    }

    /// Records an access. An audit failure fails the request: no unrecorded look at patient data.
    #[allow(clippy::too_many_arguments)]
    pub async fn audit(
        &self,
        who: &Principal,
        action: &str,
        resource_type: &str,
        resource_id: &str,
        patient_key: Option<&PatientKey>,
        outcome: &str,
        detail: impl Into<String>,
    ) -> Result<(), PortError> {
        self.catalog
            .audit(&AuditEvent {
                at: self.now(),
                actor: who.username.to_string(),
                action: action.into(),
                resource_type: resource_type.into(),
                resource_id: resource_id.into(),
                patient_key: patient_key.cloned(),
                outcome: outcome.into(),
                detail: detail.into(),
            })
            .await
    }

    /// Signs a document as `owner`: `build` gets the signer's current key (its id belongs in the
    /// document's `signer.key_id`) and returns the document; the vault unlocks the key (with
    /// `passphrase` when it is sealed), signs the canonical bytes (RFC 8785) and drops it; the
    /// stamper countersigns the signature with the hub's time. Returns the signed document and the
    /// canonical text that was signed. Every signature the hub makes (imaging/ECG reports, lab
    /// sign-offs) goes through here. Refused (no signature): no key, a key in clear where
    /// `keys.require_passphrase`, a key outside its published validity, a missing or wrong passphrase.
    pub async fn sign_document(
        &self,
        owner: &Username,
        passphrase: Option<&Passphrase>,
        build: impl FnOnce(&VaultKey) -> serde_json::Value,
    ) -> Result<(SignedDocument, String), AppError> {
        let (key, published) = self.signing_key(owner).await?;
        if self.config.keys.require_passphrase && !key.sealed {
            return Err(AppError::KeyRefused {
                code: "key_unprotected",
                message: format!(
                    "signing key {} is not sealed with a passphrase, which this alliance requires: \
                     make a new one with `yilian keygen --user {owner} --replace`",
                    key.key_id
                ),
            });
        }
        let now = self.now().0;
        let from = parse_time(&published.valid_from).unwrap_or(i64::MAX);
        let to = parse_time(&published.valid_to).unwrap_or(i64::MIN);
        if now < from || now > to {
            return Err(AppError::KeyRefused {
                code: "key_expired",
                message: format!(
                    "signing key {} is valid from {} to {}, not now: make a new one with \
                     `yilian keygen --user {owner} --replace`",
                    key.key_id, published.valid_from, published.valid_to
                ),
            });
        }
        let report = build(&key);
        let canonical = canonicalize(&report).map_err(|e| AppError::Invalid(e.to_string()))?;
        let value = self
            .vault
            .sign(owner, &key.key_id, canonical.as_bytes(), passphrase)
            .await?;
        let signature = SignatureBlock {
            algorithm: key.algorithm.clone(),
            key_id: key.key_id,
            value,
        };
        self.ensure_stamp_key().await?;
        let countersignature = self.stamper.countersign(&signature).await?;
        Ok((
            SignedDocument {
                report,
                signature,
                countersignature: Some(countersignature),
            },
            canonical,
        ))
    }

    /// The signer's current key with its published record. Without a key: created on first use (in
    /// clear, the alliance algorithm) unless `keys.require_passphrase`, where the signer makes one
    /// with `yilian keygen`.
    pub async fn signing_key(
        &self,
        owner: &Username,
    ) -> Result<(VaultKey, PublicKeyRecord), AppError> {
        let key = match self.vault.key_for(owner).await? {
            Some(k) => k,
            None if self.config.keys.require_passphrase => {
                return Err(AppError::KeyRefused {
                    code: "no_signing_key",
                    message: format!(
                        "{owner} has no signing key: make one with `yilian keygen --user {owner}`"
                    ),
                });
            }
            None => {
                self.vault
                    .create_key(owner, key_algorithm(&self.config), None, false)
                    .await?
            }
        };
        let record = self.publish_key(owner.as_str(), &key).await?;
        Ok((key, record))
    }

    /// Publishes a key in the catalog with its validity period (from now, `keys.validity_days`) the
    /// first time it is seen; the published record.
    pub async fn publish_key(
        &self,
        owner: &str,
        key: &VaultKey,
    ) -> Result<PublicKeyRecord, PortError> {
        let published = self.catalog.public_keys().await?;
        if let Some(r) = published.into_iter().find(|k| k.key_id == key.key_id) {
            return Ok(r);
        }
        let now = self.now();
        let record = PublicKeyRecord {
            key_id: key.key_id.clone(),
            algorithm: key.algorithm.clone(),
            public_key: key.public_key.clone(),
            owner: owner.to_string(),
            valid_from: format_time(now.0),
            valid_to: format_time(now.plus_days(self.config.keys.validity_days).0),
        };
        self.catalog.publish_key(&record).await?;
        Ok(record)
    }

    /// The countersigning key, published, and renewed when its validity period has passed.
    async fn ensure_stamp_key(&self) -> Result<(), PortError> {
        let key = self.stamper.stamp_key().await?;
        let record = self.publish_key(HUB_KEY_OWNER, &key).await?;
        let now = self.now().0;
        if parse_time(&record.valid_to).is_some_and(|to| now > to) {
            let key = self.stamper.renew_key().await?;
            self.publish_key(HUB_KEY_OWNER, &key).await?;
        }
        Ok(())
    }

    /// Publishes the hub's clock key and every reader's key (run at start-up). Readers without a key
    /// get one unless `keys.require_passphrase` (then they run `yilian keygen`). The number of
    /// readers with a published key.
    pub async fn ensure_reader_keys(&self) -> Result<usize, AppError> {
        self.ensure_stamp_key().await?;
        let mut n = 0;
        for u in &self.config.users {
            if let Some(user) = self.config.user(&u.username)
                && user.role == yilian_domain::Role::Reader
            {
                if self.config.keys.require_passphrase {
                    if let Some(k) = self.vault.key_for(&user.username).await? {
                        self.publish_key(user.username.as_str(), &k).await?;
                        n += 1;
                    }
                } else {
                    self.signing_key(&user.username).await?;
                    n += 1;
                }
            }
        }
        Ok(n)
    }
}

/// The alliance's algorithm for new keys (`[keys] algorithm`).
pub fn key_algorithm(config: &Config) -> Algorithm {
    match config.keys.algorithm {
        yilian_config::KeyAlgorithm::Sm2 => Algorithm::Sm2,
        yilian_config::KeyAlgorithm::Ed25519 => Algorithm::Ed25519,
    }
}
