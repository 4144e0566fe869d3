//! zstd dictionaries: raw content (samples of the files a backup read) that zstd refers to
//! as if it preceded each chunk. Two roles: small files, which alone give zstd too little to
//! find repeats in, and the large chunks of compressible files (logs, CSV), which share
//! their vocabulary. On the benchmark set they made the stored data 20 MiB (4 %) smaller.
//!
//! The agent makes each once, from the first backup that reads enough samples for it, keeps
//! the set in its cache and in the vault (each an ordinary chunk that every manifest names),
//! and seals with the same set for the rest of its life. So a manifest's list is always
//! right: a chunk a backup reuses (an unchanged file, or one the vault already holds) was
//! sealed with a dictionary of the set. When the cache is lost, the set is read back from
//! the newest recovery point, which names all of it.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use bytes::Bytes;

use crate::agent::Agent;
use crate::config::write_cache;
use crate::error::{AgentError, Result};
use crate::restore::fetch::fetch_chunks;
use crate::sealing::{Sealer, ZSTD_LEVEL, compresses, declared_size};
use crate::walk::Walked;

/// Chunks up to this size (whole small files) use the small-file dictionary, larger ones
/// the large-chunk dictionary: each gained nothing on the other's chunks.
pub const DICTIONARY_CHUNK: usize = 128 * 1024;

/// A blob names its dictionary by the first bytes of the dictionary's chunk id (inside
/// the ciphertext): an agent has a few dictionaries, and 32 bytes per small file was
/// 0.6 MiB of the benchmark's vault.
pub const REFERENCE_LEN: usize = 8;
pub type Reference = [u8; REFERENCE_LEN];

/// What a dictionary is for; its first byte (which also keeps it from starting with zstd's
/// magic number, which would make zstd read it as a formatted dictionary).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    SmallFiles = 0,
    LargeChunks = 1,
}

const ROLES: [Role; 2] = [Role::SmallFiles, Role::LargeChunks];

/// Bytes per sample, and at most this many samples (1 MiB: larger gained nothing).
const SAMPLE_BYTES: usize = 4096;
const SAMPLES: usize = 256;

/// A dictionary is at most this share of the bytes it is made for (it is stored too), and
/// at least `MIN_BYTES`: a backup with less to read makes none yet.
const SHARE: u64 = 32;
const MIN_BYTES: usize = 64 * 1024;

// zstd contexts per thread: decompression takes the dictionary per call; compression
// keeps, per role, a context holding the dictionary this thread last used with it.
thread_local! {
    static DECOMPRESSOR: RefCell<zstd::zstd_safe::DCtx<'static>> =
        RefCell::new(zstd::zstd_safe::DCtx::create());
    static COMPRESSORS: RefCell<[Option<(Reference, zstd::zstd_safe::CCtx<'static>)>; 2]> =
        const { RefCell::new([None, None]) };
}

/// How a role's chunks are compressed: zstd level 3 with matches of at least 6 bytes
/// (level 3 takes 5). Each match costs the decoder about the same whatever its length, and
/// text shares longer runs with the dictionary than that: on the benchmark's logs, CSV and
/// sources, 6 made the compressed chunks 0.5–3 % smaller and their decompression 10–20 %
/// faster (measured on those chunks alone). Small files keep the parameters zstd picks for tiny
/// sources; large chunks get level 3's for sources over 256 KiB with a larger hash table:
/// a dictionary prepared for "any size" is tuned for tiny sources, and large chunks
/// compressed with one found a quarter of the dictionary's gain and took the slow path.
/// Every frame carries its content's checksum (see `sealing`).
fn parameters(role: Role) -> Vec<zstd::zstd_safe::CParameter> {
    use zstd::zstd_safe::{CParameter::*, Strategy::ZSTD_dfast};
    match role {
        Role::SmallFiles => vec![
            CompressionLevel(ZSTD_LEVEL),
            MinMatch(6),
            ChecksumFlag(true),
        ],
        Role::LargeChunks => vec![
            CompressionLevel(ZSTD_LEVEL),
            WindowLog(21),
            ChainLog(16),
            HashLog(18),
            SearchLog(1),
            MinMatch(6),
            TargetLength(0),
            Strategy(ZSTD_dfast),
            ChecksumFlag(true),
        ],
    }
}

pub struct Dictionary {
    id: String,
    reference: Reference,
    bytes: Bytes,
    // Made when first needed (by a restore or a check).
    decoder: OnceLock<Option<zstd::dict::DecoderDictionary<'static>>>,
}

impl Dictionary {
    /// A dictionary read back (from the cache or the vault).
    pub fn new(sealer: &Sealer, bytes: Bytes) -> Dictionary {
        let id = sealer.chunk_id(&bytes);
        let hash = blake3::Hash::from_hex(&id).expect("a chunk id is hex");
        Dictionary {
            reference: hash.as_bytes()[..REFERENCE_LEN]
                .try_into()
                .expect("8 bytes"),
            id,
            bytes,
            decoder: OnceLock::new(),
        }
    }

    /// A new dictionary of `samples` for `role`.
    pub fn made(sealer: &Sealer, role: Role, samples: &[u8]) -> Arc<Dictionary> {
        let bytes = [&[role as u8][..], samples].concat();
        Arc::new(Dictionary::new(sealer, Bytes::from(bytes)))
    }

    /// Its chunk id.
    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn reference(&self) -> Reference {
        self.reference
    }

    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }

    pub fn role(&self) -> Option<Role> {
        ROLES
            .into_iter()
            .find(|role| self.bytes.first() == Some(&(*role as u8)))
    }

    /// Compresses `data` with this dictionary and its role's parameters.
    pub(crate) fn compress(&self, data: &[u8]) -> Option<Vec<u8>> {
        let role = self.role()?;
        COMPRESSORS.with(|slots| {
            let slot = &mut slots.borrow_mut()[role as usize];
            if slot
                .as_ref()
                .is_none_or(|(reference, _)| *reference != self.reference)
            {
                let mut context = zstd::zstd_safe::CCtx::create();
                for parameter in parameters(role) {
                    context.set_parameter(parameter).ok()?;
                }
                context.load_dictionary(&self.bytes).ok()?;
                *slot = Some((self.reference, context));
            }
            let (_, context) = slot.as_mut()?;
            let mut out = Vec::with_capacity(zstd::zstd_safe::compress_bound(data.len()));
            context.compress2(&mut out, data).ok()?;
            Some(out)
        })
    }

    pub(crate) fn decompress(&self, frame: &[u8], max: usize) -> Result<Vec<u8>> {
        let broken =
            |why: String| AgentError::Integrity(format!("a blob does not decompress: {why}"));
        let decoder = self
            .decoder
            .get_or_init(|| zstd::dict::DecoderDictionary::try_copy(&self.bytes).ok())
            .as_ref()
            .ok_or_else(|| broken(format!("dictionary {} does not load", self.id)))?;
        let mut out = Vec::with_capacity(declared_size(frame, max)?);
        DECOMPRESSOR
            .with(|d| {
                d.borrow_mut()
                    .decompress_using_ddict(&mut out, frame, decoder.as_ddict())
            })
            .map_err(|code| broken(zstd::zstd_safe::get_error_name(code).to_string()))?;
        Ok(out)
    }
}

/// The dictionaries for this backup: the cached set, else the set the newest recovery
/// point names; and for a role the set lacks, a new one sampled from `reading` (the files
/// this backup reads) if it holds enough.
pub async fn for_backup(agent: &Arc<Agent>, reading: &[&Walked]) -> Result<Vec<Arc<Dictionary>>> {
    let sealer = &agent.sealer;
    let path = cache_path(agent);
    let mut set = match cached_set(&path, sealer) {
        Some(cached) => cached,
        None => from_newest_point(agent).await?,
    };
    let known = set.len();
    for role in ROLES {
        if set.iter().any(|d| d.role() == Some(role)) {
            continue;
        }
        if let Some(samples) = sample(role, reading) {
            set.push(Dictionary::made(sealer, role, &samples));
        }
    }
    // In role order, so the cache reads the same however the set was found.
    set.sort_by_key(|d| d.role().map(|role| role as u8));
    if set.len() > known || !path.exists() {
        write_cache(&path, &encode_set(&set))?;
    }
    Ok(set)
}

/// Loads the dictionaries a manifest names into `sealer`, so the chunks sealed with them
/// open: from this agent's cache when it holds them (a restore on the machine that backed
/// up starts without a round trip), else from the vault. A cached one is taken only when
/// its content has the id the manifest names. One that cannot be read is not fatal here:
/// the chunks that need it fail, naming it.
pub async fn load(agent: &Arc<Agent>, sealer: &Sealer, ids: &[String]) -> Result<()> {
    let missing = |sealer: &Sealer| -> Vec<&String> {
        ids.iter()
            .filter(|id| sealer.dictionary(id).is_none())
            .collect()
    };
    if missing(sealer).is_empty() {
        return Ok(());
    }
    for dictionary in cached_set(&cache_path(agent), sealer).unwrap_or_default() {
        if ids.contains(&dictionary.id) {
            sealer.add_dictionary(dictionary);
        }
    }
    let wanted = missing(sealer);
    if wanted.is_empty() {
        return Ok(());
    }
    let unit = fetch_chunks(agent, sealer, wanted.into_iter()).await?;
    for (_, bytes) in unit.chunks {
        sealer.add_dictionary(Arc::new(Dictionary::new(sealer, bytes)));
    }
    Ok(())
}

async fn from_newest_point(agent: &Arc<Agent>) -> Result<Vec<Arc<Dictionary>>> {
    let server = agent.registration.server_name.clone();
    let Some(newest) = agent.recovery_points(&server).await?.into_iter().next() else {
        return Ok(Vec::new());
    };
    let manifest = agent.manifest(&server, &newest.name, &agent.sealer).await?;
    load(agent, &agent.sealer, &manifest.dictionaries).await?;
    manifest
        .dictionaries
        .iter()
        .map(|id| {
            agent.sealer.dictionary(id).ok_or_else(|| {
                AgentError::Integrity(format!(
                    "compression dictionary {id} of recovery point {} cannot be read; run `mars-agent check`",
                    newest.name
                ))
            })
        })
        .collect()
}

/// Samples for a role's dictionary: the first bytes of evenly spread small files, or
/// bytes at evenly spread offsets through the large files; only those that compress
/// (random data would only take room).
fn sample(role: Role, reading: &[&Walked]) -> Option<Vec<u8>> {
    let files: Vec<&&Walked> = reading
        .iter()
        .filter(|w| match role {
            Role::SmallFiles => (512..=DICTIONARY_CHUNK as u64).contains(&w.meta.len()),
            Role::LargeChunks => w.meta.len() > DICTIONARY_CHUNK as u64,
        })
        .collect();
    let total: u64 = files.iter().map(|w| w.meta.len()).sum();
    let samples = ((total / SHARE) as usize / SAMPLE_BYTES).min(SAMPLES);
    if samples * SAMPLE_BYTES < MIN_BYTES {
        return None;
    }
    let places: Vec<(&Walked, u64)> = match role {
        Role::SmallFiles => {
            let step = files.len().div_ceil(samples).max(1);
            files.iter().step_by(step).map(|w| (**w, 0)).collect()
        }
        Role::LargeChunks => {
            // Twice the samples: about half of large files' bytes are often incompressible.
            let step = (total / (2 * samples) as u64).max(SAMPLE_BYTES as u64);
            let (mut places, mut start) = (Vec::new(), 0u64);
            for walked in &files {
                let end = start + walked.meta.len();
                let first = start.div_ceil(step) * step;
                places.extend(
                    (first..end)
                        .step_by(step as usize)
                        .map(|at| (**walked, at - start)),
                );
                start = end;
            }
            places
        }
    };
    let mut bytes = Vec::with_capacity(samples * SAMPLE_BYTES);
    let mut sample = vec![0u8; SAMPLE_BYTES];
    for (walked, offset) in places {
        if bytes.len() + SAMPLE_BYTES > samples * SAMPLE_BYTES {
            break;
        }
        let Ok(file) = std::fs::File::open(&walked.abs) else {
            continue;
        };
        let read = std::os::unix::fs::FileExt::read_at(&file, &mut sample, offset).unwrap_or(0);
        if read >= 512 && compresses(&sample[..read]) {
            bytes.extend_from_slice(&sample[..read]);
        }
    }
    (bytes.len() >= MIN_BYTES).then_some(bytes)
}

/// The cached set: each dictionary as its length (u32 LE) and bytes.
fn encode_set(set: &[Arc<Dictionary>]) -> Vec<u8> {
    let mut out = Vec::new();
    for dictionary in set {
        out.extend_from_slice(&(dictionary.bytes.len() as u32).to_le_bytes());
        out.extend_from_slice(&dictionary.bytes);
    }
    out
}

fn decode_set(mut cached: &[u8]) -> Vec<Bytes> {
    let mut set = Vec::new();
    while let Some((length, rest)) = cached.split_first_chunk::<4>() {
        let length = u32::from_le_bytes(*length) as usize;
        let Some(bytes) = rest.get(..length) else {
            break;
        };
        set.push(Bytes::copy_from_slice(bytes));
        cached = &rest[length..];
    }
    set
}

/// The set in the agent's cache (`None` when there is no cache file), with ids under
/// `sealer`'s key.
fn cached_set(path: &Path, sealer: &Sealer) -> Option<Vec<Arc<Dictionary>>> {
    let cached = std::fs::read(path).ok()?;
    Some(
        decode_set(&cached)
            .into_iter()
            .map(|bytes| Arc::new(Dictionary::new(sealer, bytes)))
            .collect(),
    )
}

/// Like the index, the dictionaries belong to one registration and master key.
fn cache_path(agent: &Agent) -> PathBuf {
    let key = agent.cache_key(None);
    agent.config.cache_dir.join(format!("dictionaries-{key}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::MasterKey;

    fn walked(dir: &std::path::Path, name: &str, data: &[u8]) -> Walked {
        let abs = dir.join(name);
        std::fs::write(&abs, data).unwrap();
        Walked {
            rel: name.to_string(),
            raw: None,
            meta: std::fs::metadata(&abs).unwrap(),
            abs,
            kind: crate::manifest::Kind::File,
        }
    }

    fn random(length: usize) -> Vec<u8> {
        let mut bytes = vec![0u8; length];
        aws_lc_rs::rand::fill(&mut bytes).unwrap();
        bytes
    }

    #[test]
    fn small_files_are_sampled_from_their_start_leaving_out_random_ones() {
        let dir = tempfile::tempdir().unwrap();
        let text = b"fn main() { println!(\"backup\"); }\n".repeat(300);
        let noise = random(8000);
        let files: Vec<Walked> = (0..600)
            .map(|i| match i % 4 {
                0 => walked(dir.path(), &format!("r{i}"), &noise),
                _ => walked(dir.path(), &format!("t{i}"), &text),
            })
            .collect();
        let refs: Vec<&Walked> = files.iter().collect();
        let total: usize = files.iter().map(|w| w.meta.len() as usize).sum();
        let bytes = sample(Role::SmallFiles, &refs).expect("enough text files");
        assert!(
            bytes.len() <= total / SHARE as usize,
            "a small share of the data"
        );
        assert!(bytes.len() >= MIN_BYTES);
        assert!(
            bytes
                .chunks(SAMPLE_BYTES)
                .all(|s| s == &text[..SAMPLE_BYTES]),
            "file starts, and random files are left out"
        );
        assert!(
            sample(Role::SmallFiles, &refs[..100]).is_none(),
            "too little data"
        );
        assert!(sample(Role::LargeChunks, &refs).is_none(), "no large files");
    }

    #[test]
    fn large_files_are_sampled_through_their_length() {
        let dir = tempfile::tempdir().unwrap();
        let log = b"2024-06-01T00:00:00Z INFO [vault] job=1 bytes=2\n".repeat(100_000);
        let files = [
            walked(dir.path(), "big.log", &log),
            walked(dir.path(), "big.bin", &random(4 << 20)),
        ];
        let refs: Vec<&Walked> = files.iter().collect();
        let bytes = sample(Role::LargeChunks, &refs).expect("the log compresses");
        let total = log.len() + (4 << 20);
        let samples = (total / SHARE as usize / SAMPLE_BYTES) as f64;
        // Samples fall evenly through both files; the random file's are left out.
        let expected = 2.0 * samples * (log.len() as f64 / total as f64) * SAMPLE_BYTES as f64;
        assert!(
            (bytes.len() as f64 - expected).abs() <= 6.0 * SAMPLE_BYTES as f64,
            "{} bytes, expected about {expected}",
            bytes.len()
        );
        assert!(sample(Role::SmallFiles, &refs).is_none());
    }

    #[test]
    fn the_cached_set_round_trips_and_roles_come_from_the_first_byte() {
        let sealer = Sealer::new(&MasterKey::generate());
        let set = vec![
            Dictionary::made(&sealer, Role::SmallFiles, b"small"),
            Dictionary::made(&sealer, Role::LargeChunks, b"large"),
        ];
        let back = decode_set(&encode_set(&set));
        let back: Vec<Dictionary> = back
            .into_iter()
            .map(|b| Dictionary::new(&sealer, b))
            .collect();
        assert_eq!(back[0].id(), set[0].id());
        assert_eq!(back[1].role(), Some(Role::LargeChunks));
        assert_eq!(back[0].role(), Some(Role::SmallFiles));
        assert_eq!(
            decode_set(&encode_set(&set)[..12]).len(),
            1,
            "whole entries only"
        );
    }
}
