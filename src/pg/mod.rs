//! What cairn knows of PostgreSQL: WAL file names and segment headers
//! ([`wal`]), a `psql` session for the backup API ([`session`]), the
//! `backup_label` a base backup returns ([`label`]) and the recovery
//! settings a restore writes ([`recovery`]). The operations that use them
//! are in `ops::pg`.

pub mod label;
pub mod recovery;
pub mod session;
pub mod wal;
