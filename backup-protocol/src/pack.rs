//! The pack format: `[blobs][index][index length: u32 LE]`, id = BLAKE3 of it all.
//!
//! The index is binary: a version byte (2), then per blob its chunk id (32 bytes) and
//! length (u32 LE); the blobs lie back to back in that order from the start. The first
//! packs had a JSON index (`[{"id","offset","length"}, …]`, starting with `[`), which is
//! still read: a third of the size of a small file's blob went into its JSON entry.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// The first byte of a binary index, and the size of each of its entries.
const BINARY_INDEX: u8 = 2;
const BINARY_ENTRY: usize = 32 + 4;

/// Where one chunk's sealed blob lies inside a pack.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct PackEntry {
    pub id: String,
    pub offset: u64,
    pub length: u64,
}

/// Why a pack body was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("The pack is malformed: {0}.")]
pub struct PackError(pub String);

/// Chunk and pack ids: 64 lower-case hex digits (a BLAKE3 hash).
pub fn is_hex_id(id: &str) -> bool {
    id.len() == 64
        && id
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

/// Collects sealed chunk blobs into one pack. The blobs are kept as they are (no copy into
/// one buffer) and hashed as they arrive, so an agent streams a pack from its parts.
#[derive(Default)]
pub struct PackBuilder {
    parts: Vec<Bytes>,
    len: usize,
    hasher: blake3::Hasher,
    index: Vec<PackEntry>,
}

impl PackBuilder {
    pub fn add(&mut self, id: String, blob: Bytes) {
        self.index.push(PackEntry {
            id,
            offset: self.len as u64,
            length: blob.len() as u64,
        });
        self.len += blob.len();
        self.hasher.update(&blob);
        self.parts.push(blob);
    }

    /// Bytes of blobs so far.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// The pack's id and its body in parts: the blobs, then the index and its length.
    pub fn finish_parts(mut self) -> (String, Vec<Bytes>) {
        let mut index = Vec::with_capacity(1 + self.index.len() * BINARY_ENTRY + 4);
        index.push(BINARY_INDEX);
        for entry in &self.index {
            let id = blake3::Hash::from_hex(&entry.id).expect("a chunk id is 64 hex digits");
            index.extend_from_slice(id.as_bytes());
            index.extend_from_slice(&(entry.length as u32).to_le_bytes());
        }
        index.extend_from_slice(&(index.len() as u32).to_le_bytes());
        self.hasher.update(&index);
        self.parts.push(Bytes::from(index));
        (self.hasher.finalize().to_hex().to_string(), self.parts)
    }

    /// The pack's id and bytes in one buffer.
    pub fn finish(self) -> (String, Vec<u8>) {
        let (id, parts) = self.finish_parts();
        (id, parts.concat())
    }
}

/// The index of a pack body, checked: every entry names a valid chunk id and lies inside
/// the blob area.
pub fn parse_index(body: &[u8]) -> Result<Vec<PackEntry>, PackError> {
    parse_index_tail(body, body.len() as u64)
}

/// [`parse_index`] of a body in the parts it arrived in, without joining them: only its
/// end (the index and its length) is copied out.
pub fn parse_index_of_parts(parts: &[Bytes]) -> Result<Vec<PackEntry>, PackError> {
    let body_len: usize = parts.iter().map(Bytes::len).sum();
    let trailer = tail(parts, 4);
    let index_length = trailer
        .try_into()
        .map_or(0, |bytes: [u8; 4]| u32::from_le_bytes(bytes) as usize);
    // An index length past the body is refused by the parser, not read.
    let wanted = index_length.saturating_add(4).min(body_len);
    parse_index_tail(&tail(parts, wanted), body_len as u64)
}

/// The last `n` bytes of a body in parts (all of it when shorter).
fn tail(parts: &[Bytes], n: usize) -> Vec<u8> {
    let mut pieces = Vec::new();
    let mut wanted = n;
    for part in parts.iter().rev() {
        if wanted == 0 {
            break;
        }
        let take = wanted.min(part.len());
        pieces.push(&part[part.len() - take..]);
        wanted -= take;
    }
    pieces.into_iter().rev().flatten().copied().collect()
}

/// [`parse_index`] from the end of a body only: `tail` is its last bytes (at least the
/// index and its length), `body_len` its whole length.
fn parse_index_tail(tail: &[u8], body_len: u64) -> Result<Vec<PackEntry>, PackError> {
    let bad = |why: &str| PackError(why.to_string());
    if tail.len() < 4 || body_len < tail.len() as u64 {
        return Err(bad("shorter than its trailer"));
    }
    let (rest, trailer) = tail.split_at(tail.len() - 4);
    let length = u32::from_le_bytes(trailer.try_into().expect("4 bytes")) as usize;
    if length as u64 > body_len - 4 {
        return Err(bad("the index length points outside the pack"));
    }
    if length > rest.len() {
        return Err(bad(
            "the index is longer than the end of the pack that was read",
        ));
    }
    let data_end = body_len - 4 - length as u64;
    let index = &rest[rest.len() - length..];
    let entries: Vec<PackEntry> = match index.split_first() {
        Some((&BINARY_INDEX, entries)) => binary_entries(entries, data_end)?,
        _ => serde_json::from_slice(index)
            .map_err(|e| PackError(format!("the index is neither binary nor JSON ({e})")))?,
    };
    for entry in &entries {
        if !is_hex_id(&entry.id) {
            return Err(bad("an index entry has an invalid chunk id"));
        }
        if entry
            .offset
            .checked_add(entry.length)
            .is_none_or(|end| end > data_end)
        {
            return Err(bad("an index entry points outside the pack data"));
        }
    }
    Ok(entries)
}

/// A binary index's entries: back to back from the start, covering the blob area exactly.
fn binary_entries(index: &[u8], data_end: u64) -> Result<Vec<PackEntry>, PackError> {
    if !index.len().is_multiple_of(BINARY_ENTRY) {
        return Err(PackError("the index has a partial entry".into()));
    }
    let mut offset = 0u64;
    let mut entries = Vec::with_capacity(index.len() / BINARY_ENTRY);
    for entry in index.chunks_exact(BINARY_ENTRY) {
        let (id, length) = entry.split_at(32);
        let length = u32::from_le_bytes(length.try_into().expect("4 bytes")) as u64;
        let id: [u8; 32] = id.try_into().expect("32 bytes");
        entries.push(PackEntry {
            id: blake3::Hash::from_bytes(id).to_hex().to_string(),
            offset,
            length,
        });
        offset += length;
    }
    if offset != data_end {
        return Err(PackError(format!(
            "the index covers {offset} bytes of blobs, the pack holds {data_end}"
        )));
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packs_round_trip_and_damage_is_named() {
        let mut builder = PackBuilder::default();
        builder.add("a".repeat(64), Bytes::from_static(b"first"));
        builder.add("b".repeat(64), Bytes::from_static(b"second blob"));
        assert_eq!(builder.len(), 16);
        let mut same = PackBuilder::default();
        same.add("a".repeat(64), Bytes::from_static(b"first"));
        same.add("b".repeat(64), Bytes::from_static(b"second blob"));
        let (id, bytes) = builder.finish();
        assert_eq!(id, blake3::hash(&bytes).to_hex().to_string());
        assert_eq!(bytes.len(), 16 + 1 + 2 * BINARY_ENTRY + 4, "a binary index");
        let (parts_id, parts) = same.finish_parts();
        assert_eq!(parts.len(), 3, "two blobs, then the index");
        assert_eq!((parts_id, parts.concat()), (id.clone(), bytes.clone()));
        // Split anywhere, even inside the length: the same index.
        let split: Vec<Bytes> = bytes.chunks(3).map(Bytes::copy_from_slice).collect();
        assert_eq!(parse_index_of_parts(&split), parse_index(&bytes));
        assert!(parse_index_of_parts(&[]).is_err());
        let index = parse_index(&bytes).unwrap();
        assert_eq!(
            index[1],
            PackEntry {
                id: "b".repeat(64),
                offset: 5,
                length: 11
            }
        );
        assert_eq!(&bytes[5..16], b"second blob");

        let mut wrong_length = bytes.clone();
        let n = wrong_length.len();
        wrong_length[n - 4..].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(
            parse_index(&wrong_length)
                .unwrap_err()
                .0
                .contains("outside the pack")
        );
        assert!(parse_index(b"ab").is_err());
        // A blob length that does not add up to the blob area is named.
        let mut uneven = bytes.clone();
        uneven[16 + 1 + 32] = 6;
        assert!(
            parse_index(&uneven)
                .unwrap_err()
                .0
                .contains("covers 17 bytes of blobs, the pack holds 16")
        );
        // A partial entry.
        let mut partial = bytes[..16].to_vec();
        partial.extend_from_slice(&[BINARY_INDEX, 1, 2, 3]);
        partial.extend_from_slice(&4u32.to_le_bytes());
        assert!(
            parse_index(&partial)
                .unwrap_err()
                .0
                .contains("partial entry")
        );
        assert!(!is_hex_id(&"A".repeat(64)) && is_hex_id(&"a".repeat(64)));
    }

    /// Packs made before the binary index (and by older agents) still parse.
    #[test]
    fn json_indexes_are_still_read_and_checked() {
        let json_pack = |entries: &str, blobs: &[u8]| {
            let mut body = blobs.to_vec();
            body.extend_from_slice(entries.as_bytes());
            body.extend_from_slice(&(entries.len() as u32).to_le_bytes());
            body
        };
        let entry = |length: u64| {
            format!(
                r#"[{{"id":"{}","offset":0,"length":{length}}}]"#,
                "c".repeat(64)
            )
        };
        let body = json_pack(&entry(1), b"x");
        assert_eq!(parse_index(&body).unwrap()[0].length, 1);
        assert!(parse_index(&json_pack(&entry(9), b"x")).is_err(), "outside");
        assert!(
            parse_index(&json_pack("{not json", b"x"))
                .unwrap_err()
                .0
                .contains("neither binary nor JSON")
        );
    }
}
