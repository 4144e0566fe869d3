//! What a recovery point holds: every entry under the protected path with its metadata and
//! chunk ids. It travels sealed (the vault cannot read names or sizes).
//!
//! Two encodings of the same fields: manifests are written in a binary one ([`BINARY`] then
//! postcard, chunk ids as 32 bytes), and read in it or in JSON (the first agents wrote JSON;
//! its text starts with `{`). On the benchmark's 20,000 files the JSON was 4.3 MB and took
//! 22 ms to parse at the start of every restore and check, and 10 ms to write at the end of
//! every backup.

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

use crate::error::{AgentError, Result};
use crate::sealing::Sealer;

/// Associated data of a sealed manifest, whatever its encoding.
const PURPOSE: &str = "azsim mars manifest v1";

/// First byte of a binary manifest's plaintext.
const BINARY: u8 = 2;

/// Chunk ids as the encoding prefers them: 64 hex digits each in JSON, 32 bytes each (one
/// byte string per list) in binary.
mod chunk_ids {
    use serde::de::Visitor;
    use serde::ser::Error as _;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(ids: &[String], serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            return ids.serialize(serializer);
        }
        let mut bytes = vec![0u8; 32 * ids.len()];
        for (id, slot) in ids.iter().zip(bytes.chunks_exact_mut(32)) {
            let hash = blake3::Hash::from_hex(id)
                .map_err(|_| S::Error::custom("a chunk id is not 64 hex digits"))?;
            slot.copy_from_slice(hash.as_bytes());
        }
        serializer.serialize_bytes(&bytes)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Vec<String>, D::Error> {
        if deserializer.is_human_readable() {
            return Vec::<String>::deserialize(deserializer);
        }
        deserializer.deserialize_bytes(Ids)
    }

    struct Ids;

    impl Visitor<'_> for Ids {
        type Value = Vec<String>;

        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("chunk ids of 32 bytes each")
        }

        fn visit_bytes<E: serde::de::Error>(self, bytes: &[u8]) -> Result<Vec<String>, E> {
            if !bytes.len().is_multiple_of(32) {
                return Err(E::custom("chunk ids are not 32 bytes each"));
            }
            Ok(bytes
                .chunks_exact(32)
                .map(|id| {
                    let id: [u8; 32] = id.try_into().expect("32 bytes");
                    blake3::Hash::from_bytes(id).to_hex().to_string()
                })
                .collect())
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    File,
    Dir,
    Symlink,
}

/// Every field is written (the binary encoding has no names to leave one out by); the
/// defaults read JSON manifests, which left absent ones out.
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
    #[serde(default, with = "chunk_ids")]
    pub chunks: Vec<String>,
    #[serde(default)]
    pub target: Option<String>,
    /// The path's bytes (base64) when they are not UTF-8; `path` is then a lossy rendering
    /// for display and selection.
    #[serde(default)]
    pub raw_path: Option<String>,
    /// The same for a link target.
    #[serde(default)]
    pub raw_target: Option<String>,
    #[serde(default)]
    pub uid: Option<u32>,
    #[serde(default)]
    pub gid: Option<u32>,
    /// Extended attributes of the `user.` namespace: name → value (base64).
    #[serde(default)]
    pub xattrs: BTreeMap<String, String>,
    /// Files with the same link group are hard links to one inode.
    #[serde(default)]
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
    #[serde(default, with = "chunk_ids")]
    pub dictionaries: Vec<String>,
}

impl Manifest {
    /// The binary encoding, sealed.
    pub fn seal(&self, sealer: &Sealer) -> Vec<u8> {
        let encoded = postcard::to_extend(self, vec![BINARY])
            .expect("a manifest of chunk ids this agent made serialises");
        sealer.seal_document(PURPOSE, &encoded)
    }

    /// Opens a sealed manifest in either encoding.
    pub fn open(sealer: &Sealer, blob: &[u8]) -> Result<Self> {
        let plain = sealer.open_document(PURPOSE, blob)?;
        let unreadable = |e: &dyn std::fmt::Display| {
            AgentError::Integrity(format!("the manifest is not readable: {e}"))
        };
        match plain.first() {
            Some(&BINARY) => postcard::from_bytes(&plain[1..]).map_err(|e| unreadable(&e)),
            Some(b'{') => serde_json::from_slice(&plain).map_err(|e| unreadable(&e)),
            _ => Err(unreadable(
                &"its format is unknown (written by a newer agent? update mars-agent)",
            )),
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::MasterKey;

    fn sample(sealer: &Sealer) -> Manifest {
        let file = Entry {
            path: "docs/a.txt".into(),
            kind: Kind::File,
            mode: 0o100644,
            mtime: 1_700_000_000,
            mtime_nsec: 5,
            size: 12,
            chunks: vec![sealer.chunk_id(b"one"), sealer.chunk_id(b"two")],
            target: None,
            raw_path: None,
            raw_target: None,
            uid: Some(1000),
            gid: Some(1000),
            xattrs: BTreeMap::from([("user.tag".into(), STANDARD.encode(b"v"))]),
            link: Some(7),
        };
        let (path, raw_path) = encode_path(b"odd/\xff.bin");
        let link = Entry {
            path,
            raw_path,
            kind: Kind::Symlink,
            chunks: vec![],
            target: Some("../a.txt".into()),
            uid: None,
            xattrs: BTreeMap::new(),
            link: None,
            ..file.clone()
        };
        Manifest {
            root: "/srv/data".into(),
            created: 1_700_000_100,
            entries: vec![file, link],
            dictionaries: vec![sealer.chunk_id(b"dictionary")],
        }
    }

    fn same(a: &Manifest, b: &Manifest) {
        assert_eq!(
            serde_json::to_value(a).unwrap(),
            serde_json::to_value(b).unwrap()
        );
    }

    #[test]
    fn manifests_are_written_in_binary_and_read_back_whole() {
        let sealer = Sealer::new(&MasterKey::generate());
        let manifest = sample(&sealer);
        let sealed = manifest.seal(&sealer);
        let plain = sealer.open_document(PURPOSE, &sealed).unwrap();
        assert_eq!(plain[0], BINARY);
        let json = serde_json::to_vec(&manifest).unwrap();
        assert!(
            plain.len() < json.len() / 2,
            "{} vs {}",
            plain.len(),
            json.len()
        );
        let opened = Manifest::open(&sealer, &sealed).unwrap();
        same(&opened, &manifest);
        assert_eq!(opened.entries[1].path_bytes(), b"odd/\xff.bin");
        assert_eq!(opened.chunk_ids(), manifest.chunk_ids());
    }

    #[test]
    fn json_manifests_of_earlier_agents_still_open() {
        let sealer = Sealer::new(&MasterKey::generate());
        let id = sealer.chunk_id(b"one");
        // As the first agents wrote them: absent fields were left out.
        let json = format!(
            r#"{{"root":"/srv","created":5,"entries":[{{"path":"","kind":"dir","mode":16877,"mtime":1,"mtime_nsec":0}},{{"path":"f","kind":"file","mode":33188,"mtime":2,"mtime_nsec":3,"size":3,"chunks":["{id}"]}}]}}"#
        );
        let sealed = sealer.seal_document(PURPOSE, json.as_bytes());
        let opened = Manifest::open(&sealer, &sealed).unwrap();
        assert_eq!(opened.entries.len(), 2);
        assert_eq!(opened.entries[1].chunks, vec![id]);
        assert!(opened.dictionaries.is_empty() && opened.entries[0].uid.is_none());
    }

    #[test]
    fn an_unknown_or_damaged_encoding_is_named() {
        let sealer = Sealer::new(&MasterKey::generate());
        let newer = sealer.seal_document(PURPOSE, b"\x07future");
        let error = Manifest::open(&sealer, &newer).unwrap_err().to_string();
        assert!(error.contains("format is unknown"), "{error}");
        let truncated = sealer.seal_document(PURPOSE, &[BINARY, 3, 1]);
        let error = Manifest::open(&sealer, &truncated).unwrap_err().to_string();
        assert!(error.contains("not readable"), "{error}");
    }
}
