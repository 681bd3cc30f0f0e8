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

/// Opens the catalog (running migrations), the blob store (checked by a write) and the key vault,
/// and publishes every reader's signing key.
pub async fn open_hub(config: Config) -> anyhow::Result<Hub> {
    open_hub_with_clock(config, Arc::new(SystemClock)).await
}

pub async fn open_hub_with_clock(config: Config, clock: Arc<dyn Clock>) -> anyhow::Result<Hub> {
    let catalog = SqlCatalog::connect(&config.database.url, config.database.max_connections)
        .await
        .context("opening the catalog")?;
    let blobs = open_blobs(&config.blobs).context("opening the blob store")?;
    // A store that is unreachable, refuses the credentials or lacks the bucket fails the start, not
    // the first upload: write the empty blob (its key is the SHA-256 of nothing, so it is a valid,
    // shared content address).
    blobs
        .put(
            &yilian_app::ingest::blob_key(EMPTY_SHA256),
            bytes::Bytes::new(),
        )
        .await
        .with_context(|| format!("writing to the blob store at {}", config.blobs.url))?;
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
