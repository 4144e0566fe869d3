//! What a recovery point holds: every entry under the protected path with its metadata and
//! chunk ids. It travels sealed (the vault cannot read names or sizes).

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

use crate::error::{AgentError, Result};
use crate::sealing::Sealer;

const PURPOSE: &str = "azsim mars manifest v1";

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    File,
    Dir,
    Symlink,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Entry {
    /// Relative to the protected root, `/`-separated; `""` is the root itself.
    pub path: String,
    pub kind: Kind,
    pub mode: u32,
    pub mtime: i64,
    pub mtime_nsec: u32,
    #[serde(default)]
    pub size: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub chunks: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// The path's bytes (base64) when they are not UTF-8; `path` is then a lossy rendering
    /// for display and selection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw_path: Option<String>,
    /// The same for a link target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw_target: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gid: Option<u32>,
    /// Extended attributes of the `user.` namespace: name → value (base64).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub xattrs: BTreeMap<String, String>,
    /// Files with the same link group are hard links to one inode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<u64>,
}

/// `bytes` as the manifest stores a path: the text when it is UTF-8, else a lossy text and
/// the bytes in base64.
pub fn encode_path(bytes: &[u8]) -> (String, Option<String>) {
    match std::str::from_utf8(bytes) {
        Ok(text) => (text.to_string(), None),
        Err(_) => (
            String::from_utf8_lossy(bytes).into_owned(),
            Some(STANDARD.encode(bytes)),
        ),
    }
}

fn decode(text: &str, raw: Option<&str>) -> Vec<u8> {
    raw.and_then(|raw| STANDARD.decode(raw).ok())
        .unwrap_or_else(|| text.as_bytes().to_vec())
}

impl Entry {
    /// The path exactly as it was on the source machine (relative to the root).
    pub fn path_bytes(&self) -> Vec<u8> {
        decode(&self.path, self.raw_path.as_deref())
    }

    /// A link target exactly as it was.
    pub fn target_bytes(&self) -> Option<Vec<u8>> {
        self.target
            .as_deref()
            .map(|t| decode(t, self.raw_target.as_deref()))
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Manifest {
    /// The protected path as it was on the source machine.
    pub root: String,
    pub created: i64,
    pub entries: Vec<Entry>,
    /// Chunk ids of the compression dictionaries this point's chunks may be sealed with
    /// (none in manifests made before there were any).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dictionaries: Vec<String>,
}

impl Manifest {
    pub fn seal(&self, sealer: &Sealer) -> Vec<u8> {
        let json = serde_json::to_vec(self).expect("a manifest serialises");
        sealer.seal_document(PURPOSE, &json)
    }

    pub fn open(sealer: &Sealer, blob: &[u8]) -> Result<Self> {
        let json = sealer.open_document(PURPOSE, blob)?;
        serde_json::from_slice(&json)
            .map_err(|e| AgentError::Integrity(format!("the manifest is not readable: {e}")))
    }

    /// Every distinct chunk id the point needs, in first-use order: the dictionaries',
    /// then the files'.
    pub fn chunk_ids(&self) -> Vec<String> {
        let mut seen = std::collections::HashSet::new();
        self.dictionaries
            .iter()
            .chain(self.entries.iter().flat_map(|e| e.chunks.iter()))
            .filter(|id| seen.insert(id.as_str()))
            .cloned()
            .collect()
    }
}
