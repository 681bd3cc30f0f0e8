//! Yilian store: the sqlx catalog (SQLite by default, PostgreSQL in production, one migration story),
//! object_store blobs with durable writes, and the file key vault. Implements `yilian-app`'s ports.

pub mod audit;
pub mod blobs;
pub mod catalog;
mod coordination;
mod lab;
mod lab_fhir;
mod lab_review;
mod lifecycle;
mod patients;
mod recognition;
pub mod search;
pub mod vault;

pub use blobs::{BlobError, FsBlobs, S3Blobs, S3Tuning, StagedBlobs, open_blobs};
pub use catalog::{Backend, SqlCatalog, StoreError};
pub use vault::FileKeyVault;
