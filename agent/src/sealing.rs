//! Chunks and packs. A chunk's id is the keyed BLAKE3 of its plaintext; its blob is
//! `[format][nonce][AES-256-GCM(body)]` with the id as associated data, so a blob cannot be
//! swapped for another. The body is the chunk raw, zstd, or zstd with one of the agent's
//! [`Dictionary`]s, whose 8-byte reference then leads the body. Packs of blobs are
//! `backup_protocol::PackBuilder`'s.
//!
//! What opening a blob proves: authentication under the id proves the body is what a holder
//! of this key sealed as that chunk, so a raw body is the chunk. A zstd frame carries the
//! checksum of the content it was made from, which decompression checks, so a compressed
//! body gives back that content. A restore relies on those two (recomputing every id was 9 %
//! of its CPU); `check --read-data` recomputes every id as well, and so does a restore for
//! frames written before they carried a checksum.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};

use bytes::Bytes;

use crate::dictionary::{DICTIONARY_CHUNK, Dictionary, REFERENCE_LEN, Reference, Role};
use crate::error::{AgentError, Result};
use crate::keys::MasterKey;

const RAW: u8 = 0;
const ZSTD: u8 = 1;
const ZSTD_DICT: u8 = 2;
const TAG_LEN: usize = 16;
pub(crate) const ZSTD_LEVEL: i32 = 3;

// zstd contexts are costly to create (a fresh one per small file doubled the backup time):
// each thread keeps its own.
thread_local! {
    // Chunks: every frame carries its content's checksum (see the module comment).
    static COMPRESSOR: RefCell<zstd::bulk::Compressor<'static>> = RefCell::new({
        let mut compressor = zstd::bulk::Compressor::new(ZSTD_LEVEL).expect("zstd context");
        compressor.include_checksum(true).expect("a valid zstd parameter");
        compressor
    });
    // Level 1: samples for the compressibility probe, and documents.
    static PROBE: RefCell<zstd::bulk::Compressor<'static>> =
        RefCell::new(zstd::bulk::Compressor::new(1).expect("zstd context"));
    static DECOMPRESSOR: RefCell<zstd::bulk::Decompressor<'static>> =
        RefCell::new(zstd::bulk::Decompressor::new().expect("zstd context"));
}

fn compress(data: &[u8]) -> Option<Vec<u8>> {
    COMPRESSOR.with(|c| c.borrow_mut().compress(data).ok())
}

/// A compressed body's zstd frame, and the dictionary it was made with: `ZSTD` is the frame
/// alone, `ZSTD_DICT` the dictionary's reference and then the frame.
fn frame_of(format: u8, body: &[u8]) -> Result<(Option<Reference>, &[u8])> {
    match format {
        ZSTD => Ok((None, body)),
        _ => body
            .split_first_chunk::<{ REFERENCE_LEN }>()
            .map(|(reference, frame)| (Some(*reference), frame))
            .ok_or_else(|| AgentError::Integrity("a blob is truncated".into())),
    }
}

/// Whether a zstd frame carries the checksum of its content (RFC 8878: bit 2 of the frame
/// header descriptor, the byte after the magic number).
fn has_content_checksum(frame: &[u8]) -> bool {
    frame.len() > 4 && frame[..4] == [0x28, 0xb5, 0x2f, 0xfd] && frame[4] & 0b100 != 0
}

/// The content size a frame's header declares (bulk compression always declares it), if
/// at most `max`: the buffer a frame decompresses into is allocated at that size, not at
/// `max` (4 MiB per chunk, 1 GiB for a document).
pub(crate) fn declared_size(frame: &[u8], max: usize) -> Result<usize> {
    match zstd::zstd_safe::get_frame_content_size(frame) {
        Ok(Some(size)) if size <= max as u64 => Ok(size as usize),
        _ => Err(AgentError::Integrity(
            "a blob does not decompress: its size is missing or too large".into(),
        )),
    }
}

fn decompressed(frame: &[u8], max: usize) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(declared_size(frame, max)?);
    DECOMPRESSOR
        .with(|d| d.borrow_mut().decompress_to_buffer(frame, &mut out))
        .map_err(|e| AgentError::Integrity(format!("a blob does not decompress: {e}")))?;
    Ok(out)
}

/// AES-256-GCM is aws-lc's (the TLS provider's): twice the throughput of the `aes-gcm`
/// crate here, and it seals in place, so a blob is built without another copy.
#[derive(Clone)]
pub struct Sealer {
    id_key: [u8; 32],
    cipher: Arc<LessSafeKey>,
    key_check: String,
    /// The dictionaries a backup seals with: small chunks', large chunks'.
    sealing: [Option<Arc<Dictionary>>; 2],
    /// Dictionaries blobs may name, by reference (loaded from the manifests).
    dictionaries: Arc<RwLock<HashMap<Reference, Arc<Dictionary>>>>,
}

impl Sealer {
    pub fn new(master: &MasterKey) -> Self {
        Sealer {
            id_key: master.chunk_id_key(),
            cipher: Arc::new(LessSafeKey::new(
                UnboundKey::new(&AES_256_GCM, &master.data_key()).expect("32-byte key"),
            )),
            key_check: master.check_value(),
            sealing: [None, None],
            dictionaries: Arc::default(),
        }
    }

    /// This sealer, sealing with `dictionaries` (each for the chunks of its role), which it
    /// can also open.
    pub fn with_dictionaries(&self, dictionaries: &[Arc<Dictionary>]) -> Sealer {
        let mut sealer = self.clone();
        for dictionary in dictionaries {
            self.add_dictionary(dictionary.clone());
            if let Some(role) = dictionary.role() {
                sealer.sealing[role as usize] = Some(dictionary.clone());
            }
        }
        sealer
    }

    /// Lets blobs sealed with `dictionary` be opened (by this sealer and its clones).
    pub fn add_dictionary(&self, dictionary: Arc<Dictionary>) {
        self.dictionaries
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(dictionary.reference(), dictionary);
    }

    /// The loaded dictionary whose chunk id is `id`.
    pub fn dictionary(&self, id: &str) -> Option<Arc<Dictionary>> {
        self.dictionaries
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .find(|d| d.id() == id)
            .cloned()
    }

    fn dictionary_named(&self, reference: Reference) -> Result<Arc<Dictionary>> {
        self.dictionaries
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&reference)
            .cloned()
            .ok_or_else(|| {
                AgentError::Integrity(format!(
                    "the chunk was compressed with dictionary {}…, which is not available (its recovery point does not name it, or it is damaged)",
                    reference.iter().map(|b| format!("{b:02x}")).collect::<String>()
                ))
            })
    }

    /// The master key's check value (names caches that belong to this key).
    pub fn key_check(&self) -> &str {
        &self.key_check
    }

    pub fn chunk_id(&self, data: &[u8]) -> String {
        blake3::keyed_hash(&self.id_key, data).to_hex().to_string()
    }

    /// Compresses (unless the data does not shrink) and encrypts a chunk.
    pub fn seal(&self, id: &str, data: &[u8]) -> Vec<u8> {
        let shrinks = |c: &Vec<u8>| c.len() < data.len() - data.len() / 32;
        if !worth_compressing(data) {
            return self.encrypt(RAW, &[data], id.as_bytes());
        }
        let role = match data.len() <= DICTIONARY_CHUNK {
            true => Role::SmallFiles,
            false => Role::LargeChunks,
        };
        // A dictionary is never sealed with one: it could not be opened.
        let dictionary = self.sealing[role as usize]
            .as_ref()
            .filter(|_| !self.sealing.iter().flatten().any(|d| d.id() == id));
        if let Some(dictionary) = dictionary
            && let Some(compressed) = dictionary.compress(data).filter(shrinks)
        {
            return self.encrypt(
                ZSTD_DICT,
                &[&dictionary.reference(), &compressed],
                id.as_bytes(),
            );
        }
        match compress(data).filter(shrinks) {
            Some(compressed) => self.encrypt(ZSTD, &[&compressed], id.as_bytes()),
            None => self.encrypt(RAW, &[data], id.as_bytes()),
        }
    }

    /// `[format][nonce][ciphertext][tag]` of the body's parts, encrypted in place.
    fn encrypt(&self, format: u8, body: &[&[u8]], aad: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        aws_lc_rs::rand::fill(&mut nonce).expect("the system random generator");
        let length: usize = body.iter().map(|part| part.len()).sum();
        let mut blob = Vec::with_capacity(1 + NONCE_LEN + length + TAG_LEN);
        blob.push(format);
        blob.extend_from_slice(&nonce);
        for part in body {
            blob.extend_from_slice(part);
        }
        let tag = self
            .cipher
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad),
                &mut blob[1 + NONCE_LEN..],
            )
            .expect("AES-GCM on an in-memory buffer");
        blob.extend_from_slice(tag.as_ref());
        blob
    }

    fn decrypt(&self, blob: &[u8], aad: &[u8], max: usize) -> Result<Vec<u8>> {
        let mut blob = blob.to_vec();
        let (format, body) = self.decrypt_in_place(&mut blob, aad)?;
        match format {
            RAW => {
                blob.truncate(body.end);
                blob.drain(..body.start);
                Ok(blob)
            }
            compressed => self.decompressed(compressed, &blob[body], max),
        }
    }

    /// Opens the chunks whose blobs lie in `buffer` at (id, offset, length), decrypting in
    /// place: a stored (raw) chunk comes back as a slice of the buffer, a compressed one
    /// decompressed. Each is checked against its id when `recompute_ids`, or when its frame
    /// carries no checksum (see the module comment). A blob that fails is reported, not
    /// fatal.
    pub fn open_all(
        &self,
        mut buffer: Vec<u8>,
        blobs: &[(String, usize, usize)],
        recompute_ids: bool,
    ) -> Vec<(String, Result<Bytes>)> {
        let mut bodies = Vec::with_capacity(blobs.len());
        for (id, offset, length) in blobs {
            let body = match buffer.get_mut(*offset..offset + length) {
                Some(blob) => self
                    .decrypt_in_place(blob, id.as_bytes())
                    .map(|(format, body)| (format, offset + body.start..offset + body.end)),
                None => Err(AgentError::Integrity(
                    "the pack is shorter than its index says".into(),
                )),
            };
            bodies.push(body);
        }
        let buffer = Bytes::from(buffer);
        blobs
            .iter()
            .zip(bodies)
            .map(|((id, _, _), body)| {
                // Raw: the authenticated body is the chunk. Compressed: proven when zstd
                // checked the frame's content checksum.
                let opened = body.and_then(|(format, range)| match format {
                    RAW => Ok((buffer.slice(range), true)),
                    compressed => {
                        let (dictionary, frame) = frame_of(compressed, &buffer[range])?;
                        let data = self.decompress_frame(dictionary, frame, MAX_CHUNK)?;
                        Ok((Bytes::from(data), has_content_checksum(frame)))
                    }
                });
                let checked = opened.and_then(|(data, proven)| {
                    match (proven && !recompute_ids) || self.chunk_id(&data) == *id {
                        true => Ok(data),
                        false => Err(AgentError::Integrity(format!(
                            "chunk {id} does not match its content"
                        ))),
                    }
                });
                (id.clone(), checked)
            })
            .collect()
    }

    /// The plaintext of a compressed body (see [`frame_of`]).
    fn decompressed(&self, format: u8, body: &[u8], max: usize) -> Result<Vec<u8>> {
        let (dictionary, frame) = frame_of(format, body)?;
        self.decompress_frame(dictionary, frame, max)
    }

    fn decompress_frame(
        &self,
        dictionary: Option<Reference>,
        frame: &[u8],
        max: usize,
    ) -> Result<Vec<u8>> {
        match dictionary {
            None => decompressed(frame, max),
            Some(reference) => self.dictionary_named(reference)?.decompress(frame, max),
        }
    }

    /// Decrypts `blob` in place; returns its format and where the body lies in it.
    fn decrypt_in_place(
        &self,
        blob: &mut [u8],
        aad: &[u8],
    ) -> Result<(u8, std::ops::Range<usize>)> {
        if blob.len() < 1 + NONCE_LEN + TAG_LEN {
            return Err(AgentError::Integrity("a blob is truncated".into()));
        }
        let format = blob[0];
        if ![RAW, ZSTD, ZSTD_DICT].contains(&format) {
            return Err(AgentError::Integrity(format!(
                "unknown blob format {format}"
            )));
        }
        let (head, body) = blob.split_at_mut(1 + NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(&head[1..]).expect("12 bytes");
        let plain = self
            .cipher
            .open_in_place(nonce, Aad::from(aad), body)
            .map_err(|_| {
                AgentError::Integrity(
                    "a blob failed authentication (damaged, or another key)".into(),
                )
            })?
            .len();
        Ok((format, 1 + NONCE_LEN..1 + NONCE_LEN + plain))
    }

    /// Seals a document (the manifest) under a purpose label. zstd's fastest level: a
    /// manifest is mostly chunk ids, which no level shrinks further, and level 3 made its
    /// sealing a tenth of a no-op backup.
    pub fn seal_document(&self, purpose: &str, data: &[u8]) -> Vec<u8> {
        let compressed = PROBE
            .with(|p| p.borrow_mut().compress(data).ok())
            .unwrap_or_else(|| data.to_vec());
        self.encrypt(ZSTD, &[&compressed], purpose.as_bytes())
    }

    pub fn open_document(&self, purpose: &str, blob: &[u8]) -> Result<Vec<u8>> {
        self.decrypt(blob, purpose.as_bytes(), 1 << 30)
    }
}

/// Largest chunk the chunker makes (FastCDC maximum).
pub const MAX_CHUNK: usize = 4 * 1024 * 1024;

/// Incompressible data (random, already compressed) is detected on three 4 KiB samples
/// (start, middle, end), so it costs a fraction of a full compression attempt; small
/// chunks are simply compressed.
fn worth_compressing(data: &[u8]) -> bool {
    const SAMPLE: usize = 4096;
    if data.len() < 512 {
        return false;
    }
    if data.len() <= 8 * SAMPLE {
        return true;
    }
    let starts = [0, data.len() / 2 - SAMPLE / 2, data.len() - SAMPLE];
    starts
        .iter()
        .any(|&start| compresses(&data[start..start + SAMPLE]))
}

/// Whether `sample` shrinks by a sixteenth or more at zstd's fastest level.
pub fn compresses(sample: &[u8]) -> bool {
    PROBE
        .with(|p| p.borrow_mut().compress(sample))
        .is_ok_and(|c| c.len() < sample.len() * 15 / 16)
}

#[cfg(test)]
mod tests {
    use super::*;

    impl Sealer {
        fn clone_without_dictionaries(&self) -> Sealer {
            Sealer {
                sealing: [None, None],
                dictionaries: Arc::default(),
                ..self.clone()
            }
        }
    }

    /// One blob opened from its own buffer, as a check opens it (`recompute_ids`) or as a
    /// restore does.
    fn open_as(sealer: &Sealer, id: &str, blob: &[u8], recompute_ids: bool) -> Result<Bytes> {
        let whole = [(id.to_string(), 0, blob.len())];
        sealer
            .open_all(blob.to_vec(), &whole, recompute_ids)
            .remove(0)
            .1
    }

    fn open_one(sealer: &Sealer, id: &str, blob: &[u8]) -> Result<Bytes> {
        open_as(sealer, id, blob, true)
    }

    fn restore_one(sealer: &Sealer, id: &str, blob: &[u8]) -> Result<Bytes> {
        open_as(sealer, id, blob, false)
    }

    #[test]
    fn chunks_round_trip_and_tampering_is_caught() {
        let sealer = Sealer::new(&MasterKey::generate());
        let text = b"hello hello hello hello ".repeat(100);
        let id = sealer.chunk_id(&text);
        let blob = sealer.seal(&id, &text);
        assert!(blob.len() < text.len(), "text compresses");
        assert_eq!(open_one(&sealer, &id, &blob).unwrap(), text);
        let mut bad = blob.clone();
        *bad.last_mut().unwrap() ^= 1;
        assert!(open_one(&sealer, &id, &bad).is_err());
        let other = sealer.chunk_id(b"other");
        assert!(
            open_one(&sealer, &other, &blob).is_err(),
            "a blob is bound to its id"
        );
        let other_key = Sealer::new(&MasterKey::generate());
        assert!(open_one(&other_key, &id, &blob).is_err());
    }

    #[test]
    fn blobs_open_in_place_from_one_buffer() {
        let sealer = Sealer::new(&MasterKey::generate());
        let text = b"compressible text ".repeat(200);
        let mut random = vec![0u8; 40 * 1024];
        aws_lc_rs::rand::fill(&mut random).unwrap();
        let mut buffer = b"ignored prefix".to_vec();
        let mut blobs = Vec::new();
        for data in [&text[..], &random[..]] {
            let id = sealer.chunk_id(data);
            let blob = sealer.seal(&id, data);
            blobs.push((id, buffer.len(), blob.len()));
            buffer.extend_from_slice(&blob);
        }
        // A third entry whose blob was damaged, and one past the end of the buffer.
        let (damaged_id, at, length) = blobs[0].clone();
        let mut damaged = buffer[at..at + length].to_vec();
        damaged[length - 1] ^= 1;
        blobs.push((damaged_id, buffer.len(), length));
        buffer.extend_from_slice(&damaged);
        blobs.push((sealer.chunk_id(b"x"), buffer.len(), 100));
        let opened = sealer.open_all(buffer, &blobs, true);
        assert_eq!(opened[0].1.as_ref().unwrap().as_ref(), &text[..]);
        assert_eq!(opened[1].1.as_ref().unwrap().as_ref(), &random[..]);
        assert!(
            opened[2]
                .1
                .as_ref()
                .unwrap_err()
                .to_string()
                .contains("authentication")
        );
        assert!(
            opened[3]
                .1
                .as_ref()
                .unwrap_err()
                .to_string()
                .contains("shorter")
        );
    }

    #[test]
    fn chunks_use_their_role_s_dictionary_which_a_blob_names() {
        let sealer = Sealer::new(&MasterKey::generate());
        let shared = b"pub fn backup_vault_chunk(index: usize) -> Result<()> {\n".repeat(40);
        let small_files = Dictionary::made(&sealer, Role::SmallFiles, &shared);
        let large_chunks = Dictionary::made(
            &sealer,
            Role::LargeChunks,
            b"2024-06-01 INFO [job] ".repeat(40).as_slice(),
        );
        let with = sealer.with_dictionaries(&[small_files.clone(), large_chunks.clone()]);
        let small = [&b"// a small file\n"[..], &shared[..600]].concat();
        let id = sealer.chunk_id(&small);
        let blob = with.seal(&id, &small);
        assert_eq!(blob[0], ZSTD_DICT);
        assert!(
            blob.len() < sealer.seal(&id, &small).len(),
            "the dictionary helps"
        );
        assert_eq!(open_one(&with, &id, &blob).unwrap(), small);
        // A sealer that has not loaded the dictionary says which one it needs.
        let error = open_one(&sealer.clone_without_dictionaries(), &id, &blob).unwrap_err();
        assert!(
            error.to_string().contains(&small_files.id()[..16]),
            "{error}"
        );
        // A large chunk uses the other dictionary.
        let large = b"2024-06-01 INFO [job] bytes=1 ".repeat(DICTIONARY_CHUNK / 16);
        let large_id = sealer.chunk_id(&large);
        let blob = with.seal(&large_id, &large);
        assert_eq!(blob[0], ZSTD_DICT);
        assert_eq!(open_one(&with, &large_id, &blob).unwrap(), large);
        let mut body = blob.clone();
        let (_, range) = with
            .decrypt_in_place(&mut body, large_id.as_bytes())
            .unwrap();
        assert!(
            has_content_checksum(&body[range][REFERENCE_LEN..]),
            "frames made with a dictionary carry a checksum too"
        );
        // A dictionary is never sealed with one (it could not be opened).
        assert_eq!(with.seal(small_files.id(), small_files.bytes())[0], ZSTD);
        assert_eq!(with.seal(large_chunks.id(), large_chunks.bytes())[0], ZSTD);
    }

    #[test]
    fn random_data_is_stored_raw() {
        let mut random = vec![0u8; 64 * 1024];
        aws_lc_rs::rand::fill(&mut random).unwrap();
        let sealer = Sealer::new(&MasterKey::generate());
        let id = sealer.chunk_id(&random);
        let blob = sealer.seal(&id, &random);
        assert_eq!(blob[0], RAW);
        assert_eq!(open_one(&sealer, &id, &blob).unwrap(), random);
    }

    #[test]
    fn compressed_chunks_carry_their_checksum_and_frames_without_one_are_checked_by_id() {
        let sealer = Sealer::new(&MasterKey::generate());
        let text = b"a line of text that compresses well\n".repeat(300);
        let id = sealer.chunk_id(&text);
        let blob = sealer.seal(&id, &text);
        assert_eq!(blob[0], ZSTD);
        let mut body = blob.clone();
        let (_, range) = sealer.decrypt_in_place(&mut body, id.as_bytes()).unwrap();
        assert!(
            has_content_checksum(&body[range]),
            "new frames carry a checksum"
        );
        assert_eq!(restore_one(&sealer, &id, &blob).unwrap(), text);

        // A frame without a checksum (as written before) sealed under another chunk's id:
        // authentication passes (the key holder sealed it so), recomputing the id does not.
        let mut plain = zstd::bulk::Compressor::new(ZSTD_LEVEL).unwrap();
        plain.include_checksum(false).unwrap();
        let frame = plain.compress(&text).unwrap();
        assert!(!has_content_checksum(&frame));
        let other = sealer.chunk_id(b"another chunk");
        let mislabelled = sealer.encrypt(ZSTD, &[&frame], other.as_bytes());
        let error = restore_one(&sealer, &other, &mislabelled)
            .unwrap_err()
            .to_string();
        assert!(error.contains("does not match its content"), "{error}");
        let good = sealer.encrypt(ZSTD, &[&frame], id.as_bytes());
        assert_eq!(restore_one(&sealer, &id, &good).unwrap(), text);

        // The same with a checksum: a restore relies on it, a check recomputes the id.
        let framed = compress(&text).unwrap();
        let mislabelled = sealer.encrypt(ZSTD, &[&framed], other.as_bytes());
        assert!(restore_one(&sealer, &other, &mislabelled).is_ok());
        let checked = open_one(&sealer, &other, &mislabelled);
        assert!(checked.unwrap_err().to_string().contains("does not match"));
    }

    #[test]
    fn a_frame_is_decompressed_only_to_the_size_it_declares() {
        let text = b"a line of text that repeats\n".repeat(1000);
        let frame = compress(&text).unwrap();
        assert_eq!(declared_size(&frame, MAX_CHUNK).unwrap(), text.len());
        assert_eq!(decompressed(&frame, MAX_CHUNK).unwrap(), text);
        let error = decompressed(&frame, text.len() - 1)
            .unwrap_err()
            .to_string();
        assert!(error.contains("too large"), "{error}");
        // A streamed frame declares no size: refused, not decompressed into a guess.
        let mut streamed = zstd::stream::Encoder::new(Vec::new(), ZSTD_LEVEL).unwrap();
        std::io::Write::write_all(&mut streamed, &text).unwrap();
        let streamed = streamed.finish().unwrap();
        assert!(decompressed(&streamed, MAX_CHUNK).is_err());
    }

    #[test]
    fn a_frame_whose_content_does_not_match_its_checksum_fails() {
        let sealer = Sealer::new(&MasterKey::generate());
        let text = b"numbers 0123456789 and words\n".repeat(400);
        let id = sealer.chunk_id(&text);
        let mut frame = compress(&text).unwrap();
        let last = frame.len() - 1;
        frame[last] ^= 0x40; // the checksum is the frame's last 4 bytes
        let blob = sealer.encrypt(ZSTD, &[&frame], id.as_bytes());
        let error = restore_one(&sealer, &id, &blob).unwrap_err().to_string();
        assert!(error.contains("does not decompress"), "{error}");
    }
}
