//! The hub: configuration plus the ports, and the small services every use case shares
//! (patient keys, audit, signing keys).

use std::sync::{Arc, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use yilian_config::{Config, RoutingConfig};
use yilian_domain::{LocalPatientId, PatientKey, ResidentId, UnixMillis, Username};
use yilian_policy::Rota;
use yilian_signing::{PublicKeyRecord, SignatureBlock, SignedDocument, canonicalize, format_time};

use crate::access::Principal;
use crate::metrics::HubCounters;
use crate::ports::{AuditEvent, Blobs, Catalog, Clock, KeyVault, PortError, VaultKey};
use crate::render_cache::RenderCache;

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
            config,
            catalog,
            blobs,
            vault,
            clock,
        }
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
    /// document's `signer.key_id`) and returns the document; the vault signs its canonical bytes
    /// (RFC 8785). Returns the signed document and the canonical text that was signed. Every signature
    /// the hub makes (imaging/ECG reports, lab sign-offs) goes through here.
    pub async fn sign_document(
        &self,
        owner: &Username,
        build: impl FnOnce(&VaultKey) -> serde_json::Value,
    ) -> Result<(SignedDocument, String), crate::error::AppError> {
        let key = self.signing_key(owner).await?;
        let report = build(&key);
        let canonical =
            canonicalize(&report).map_err(|e| crate::error::AppError::Invalid(e.to_string()))?;
        let value = self
            .vault
            .sign(owner, &key.key_id, canonical.as_bytes())
            .await?;
        Ok((
            SignedDocument {
                report,
                signature: SignatureBlock {
                    algorithm: key.algorithm.clone(),
                    key_id: key.key_id,
                    value,
                },
            },
            canonical,
        ))
    }

    /// The signer's key, published in the catalog with its validity period the first time it is seen.
    pub async fn signing_key(&self, owner: &Username) -> Result<VaultKey, PortError> {
        let key = self.vault.key_for(owner).await?;
        let published = self.catalog.public_keys().await?;
        if !published.iter().any(|k| k.key_id == key.key_id) {
            let now = self.now();
            self.catalog
                .publish_key(&PublicKeyRecord {
                    key_id: key.key_id.clone(),
                    algorithm: key.algorithm.clone(),
                    public_key: key.public_key.clone(),
                    owner: owner.to_string(),
                    valid_from: format_time(now.0),
                    valid_to: format_time(now.plus_days(self.config.keys.validity_days).0),
                })
                .await?;
        }
        Ok(key)
    }

    /// Makes sure every reader in the directory has a published key (run at start-up).
    pub async fn ensure_reader_keys(&self) -> Result<usize, PortError> {
        let mut n = 0;
        for u in &self.config.users {
            if let Some(user) = self.config.user(&u.username)
                && user.role == yilian_domain::Role::Reader
            {
                self.signing_key(&user.username).await?;
                n += 1;
            }
        }
        Ok(n)
    }
}
