//! backup-protocol: the contract between vault-server and mars-agent.
//!
//! - [`routes`]: every `/backup/v1` path, built in one place.
//! - [`messages`]: the request and response body of every route (camelCase JSON).
//! - [`pack`]: the pack format — sealed chunk blobs back to back, a binary index of
//!   (id, length) (or, in older packs, JSON of `{id, offset, length}`), the index length
//!   as u32 LE; a pack's id is the BLAKE3 of it all — with the one builder and the one
//!   checked parser both sides use.
//!
//! The server never decrypts: chunk ids, manifests and blobs are opaque to it. Types here
//! carry no behaviour beyond (de)serialisation and the pack's own checks.

pub mod messages;
pub mod pack;
pub mod routes;

pub use messages::*;
pub use pack::{PackBuilder, PackEntry, PackError, is_hex_id, parse_index, parse_index_of_parts};
