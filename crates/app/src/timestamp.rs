//! The hub's clock countersignature: the [`TimeStamper`] the hub uses until a GB/T 20520 /
//! RFC 3161 time-stamping service replaces it. Its key lives in the vault under the owner `hub`
//! (created on first use, in clear: the hub signs unattended, so file mode 0600 is its protection)
//! and is published like the signers' keys.

use std::sync::Arc;

use async_trait::async_trait;
use yilian_domain::Username;
use yilian_signing::{
    Algorithm, Countersignature, HUB_KEY_OWNER, SignatureBlock, countersign_message, format_time,
};

use crate::ports::{Clock, KeyVault, PortError, TimeStamper, VaultError, VaultKey};

/// Countersigns with the hub's clock key at the hub clock's time.
pub struct HubClockStamper {
    vault: Arc<dyn KeyVault>,
    clock: Arc<dyn Clock>,
    algorithm: Algorithm,
}

impl HubClockStamper {
    pub fn new(vault: Arc<dyn KeyVault>, clock: Arc<dyn Clock>, algorithm: Algorithm) -> Self {
        HubClockStamper {
            vault,
            clock,
            algorithm,
        }
    }

    fn owner() -> Result<Username, PortError> {
        Username::new(HUB_KEY_OWNER).map_err(|e| PortError::Corrupt(e.to_string()))
    }
}

#[async_trait]
impl TimeStamper for HubClockStamper {
    async fn stamp_key(&self) -> Result<VaultKey, PortError> {
        let owner = Self::owner()?;
        match self.vault.key_for(&owner).await? {
            Some(k) => Ok(k),
            None => {
                self.vault
                    .create_key(&owner, self.algorithm, None, false)
                    .await
            }
        }
    }

    async fn renew_key(&self) -> Result<VaultKey, PortError> {
        self.vault
            .create_key(&Self::owner()?, self.algorithm, None, true)
            .await
    }

    async fn countersign(&self, signature: &SignatureBlock) -> Result<Countersignature, PortError> {
        let key = self.stamp_key().await?;
        let time = format_time(self.clock.now().0);
        let message = countersign_message(signature, &time)
            .map_err(|e| PortError::Corrupt(format!("countersigning: {e}")))?;
        let value = self
            .vault
            .sign(&Self::owner()?, &key.key_id, message.as_bytes(), None)
            .await
            .map_err(|e| match e {
                VaultError::Port(p) => p,
                other => PortError::Unavailable(format!("the hub clock key: {other}")),
            })?;
        Ok(Countersignature {
            algorithm: key.algorithm,
            key_id: key.key_id,
            time,
            value,
        })
    }
}
