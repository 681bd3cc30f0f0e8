//! The composition root: turns a [`Config`] into a running [`Hub`] with its real adapters (SQL catalog,
//! blob store, key vault, wall clock). The binary and the end-to-end tests both build the hub here.

pub mod simulate;

use std::sync::Arc;

use anyhow::Context;
use yilian_app::{Clock, Hub, SystemClock};
use yilian_config::Config;
use yilian_store::{FileKeyVault, SqlCatalog, open_blobs};

/// SHA-256 of zero bytes.
const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// Opens the catalog (running migrations), the blob store and the key vault, and publishes every
/// reader's signing key.
pub async fn open_hub(config: Config) -> anyhow::Result<Hub> {
    open_hub_with_clock(config, Arc::new(SystemClock)).await
}

pub async fn open_hub_with_clock(config: Config, clock: Arc<dyn Clock>) -> anyhow::Result<Hub> {
    let catalog = SqlCatalog::connect(&config.database.url, config.database.max_connections)
        .await
        .context("opening the catalog")?;
    let blobs = open_blobs(&config.blobs).context("opening the blob store")?;
    let vault = FileKeyVault::new(&config.keys.dir);
    let hub = Hub::new(
        Arc::new(config),
        Arc::new(catalog),
        blobs,
        Arc::new(vault),
        clock,
    );
    hub.ensure_reader_keys()
        .await
        .context("preparing readers' signing keys")?;
    Ok(hub)
}

/// Checks that the hub can write its blob store, so a store that is unreachable, refuses the
/// credentials or lacks the bucket stops `yilian serve` at start instead of failing the first upload.
/// Writes the empty blob: its key is the SHA-256 of nothing, a valid content address any hub shares.
/// (Read-only commands such as `audit verify` do not call it.)
pub async fn check_blob_store(hub: &Hub) -> anyhow::Result<()> {
    hub.blobs
        .put(
            &yilian_app::ingest::blob_key(EMPTY_SHA256),
            bytes::Bytes::new(),
        )
        .await
        .with_context(|| format!("writing to the blob store at {}", hub.config.blobs.url))
}
