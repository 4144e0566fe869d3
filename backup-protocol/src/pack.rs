//! The pack format: `[blobs][index JSON][index length: u32 LE]`, id = BLAKE3 of it all.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

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
        let mut index = serde_json::to_vec(&self.index).expect("an index serialises");
        index.extend_from_slice(&((index.len()) as u32).to_le_bytes());
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
    let entries: Vec<PackEntry> = serde_json::from_slice(&rest[rest.len() - length..])
        .map_err(|e| PackError(format!("the index is not JSON ({e})")))?;
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
        let mut outside = PackBuilder::default();
        outside.add("c".repeat(64), Bytes::from_static(b"x"));
        let (_, mut outside) = outside.finish();
        let text = String::from_utf8_lossy(&outside).replace("\"length\":1", "\"length\":9");
        outside = text.into_bytes();
        assert!(parse_index(&outside).is_err());
        assert!(!is_hex_id(&"A".repeat(64)) && is_hex_id(&"a".repeat(64)));
    }
}
