//! What a recovery point holds: every entry under the protected path with its metadata and
//! chunk ids. It travels sealed (the vault cannot read names or sizes).

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
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Manifest {
    /// The protected path as it was on the source machine.
    pub root: String,
    pub created: i64,
    pub entries: Vec<Entry>,
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

    /// Every distinct chunk id, in first-use order.
    pub fn chunk_ids(&self) -> Vec<String> {
        let mut seen = std::collections::HashSet::new();
        self.entries
            .iter()
            .flat_map(|e| e.chunks.iter())
            .filter(|id| seen.insert(id.as_str()))
            .cloned()
            .collect()
    }
}
