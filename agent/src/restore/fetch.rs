//! Fetching chunks for a restore: located in one query per unit, read as coalesced ranges
//! per pack, then authenticated, checked against their ids and decompressed on every core,
//! off the async runtime. A chunk that fails verification is reported, not fatal.

use std::collections::HashMap;

use crate::agent::Agent;
use crate::error::{AgentError, Result};
use crate::sealing::Sealer;

/// Largest single range read from a pack.
const RANGE_BYTES: u64 = 16 * 1024 * 1024;

/// Chunks of one unit: the verified plaintexts, and the chunks that failed (with the pack
/// they are in and why).
#[derive(Default)]
pub struct Unit {
    pub chunks: HashMap<String, Vec<u8>>,
    pub damaged: HashMap<String, (String, String)>,
}

pub type Fetched = Result<Unit>;

/// Authenticates and decompresses the chunks of one downloaded range on every core; a
/// chunk that fails is reported, not fatal.
fn decode_parallel(
    sealer: &Sealer,
    bytes: &[u8],
    range_start: u64,
    chunks: &[(String, u64, u64)],
    pack: &str,
    unit: &mut Unit,
) -> Result<()> {
    let workers = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2);
    let per_worker = chunks.len().div_ceil(workers).max(1);
    let results = std::thread::scope(|scope| {
        let handles: Vec<_> = chunks
            .chunks(per_worker)
            .map(|part| {
                scope.spawn(move || {
                    part.iter()
                        .map(|(id, offset, length)| {
                            let from = (offset - range_start) as usize;
                            let opened = match bytes.get(from..from + *length as usize) {
                                Some(blob) => sealer.open(id, blob),
                                None => Err(AgentError::Integrity(format!(
                                    "pack {pack} is shorter than its index says"
                                ))),
                            };
                            (id.clone(), opened)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut out = Vec::with_capacity(chunks.len());
        for handle in handles {
            out.extend(
                handle
                    .join()
                    .map_err(|_| AgentError::Integrity("a decoder stopped".into()))?,
            );
        }
        Ok::<_, AgentError>(out)
    })?;
    for (id, opened) in results {
        match opened {
            Ok(data) => {
                unit.chunks.insert(id, data);
            }
            Err(e) => {
                unit.damaged.insert(id, (pack.to_string(), e.to_string()));
            }
        }
    }
    Ok(())
}

/// Fetches and verifies chunks: located in one query, read as coalesced ranges per pack.
pub async fn fetch_chunks<'a>(
    agent: &Agent,
    sealer: &Sealer,
    ids: impl Iterator<Item = &'a String>,
) -> Fetched {
    let mut unique: Vec<String> = ids.cloned().collect();
    unique.sort();
    unique.dedup();
    if unique.is_empty() {
        return Ok(Unit::default());
    }
    let located = agent.vault.locate(unique).await?;
    fetch_located(agent, sealer, located).await
}

/// Reads and verifies chunks whose places are known: per pack, neighbouring chunks are read
/// as one range (at most [`RANGE_BYTES`]).
pub async fn fetch_located(
    agent: &Agent,
    sealer: &Sealer,
    located: Vec<backup_protocol::ChunkLocation>,
) -> Fetched {
    let mut unit = Unit::default();
    let mut by_pack: HashMap<String, Vec<(String, u64, u64)>> = HashMap::new();
    for chunk in located {
        by_pack
            .entry(chunk.pack)
            .or_default()
            .push((chunk.id, chunk.offset, chunk.length));
    }
    for (pack, mut chunks) in by_pack {
        chunks.sort_by_key(|c| c.1);
        // Coalesce neighbouring chunks into ranges of at most RANGE_BYTES.
        let mut start = 0;
        while start < chunks.len() {
            let mut end = start + 1;
            while end < chunks.len()
                && chunks[end].1 <= chunks[end - 1].1 + chunks[end - 1].2 + 1024 * 1024
                && chunks[end].1 + chunks[end].2 - chunks[start].1 <= RANGE_BYTES
            {
                end += 1;
            }
            let range_start = chunks[start].1;
            let range_end = chunks[end - 1].1 + chunks[end - 1].2;
            let wanted = &chunks[start..end];
            match agent.vault.read_pack(&pack, range_start, range_end).await {
                Ok(bytes) => {
                    // Decoding is CPU work: off the async runtime.
                    let (sealer, wanted, pack) = (sealer.clone(), wanted.to_vec(), pack.clone());
                    let decoded = tokio::task::spawn_blocking(move || {
                        let mut part = Unit::default();
                        decode_parallel(&sealer, &bytes, range_start, &wanted, &pack, &mut part)
                            .map(|()| part)
                    })
                    .await
                    .map_err(|e| AgentError::Integrity(format!("a decoder stopped: {e}")))??;
                    unit.chunks.extend(decoded.chunks);
                    unit.damaged.extend(decoded.damaged);
                }
                // The pack is gone or shorter than its index: its chunks are damaged.
                Err(AgentError::NotFound(reason)) | Err(AgentError::Service(reason)) => {
                    for (id, _, _) in wanted {
                        unit.damaged
                            .insert(id.clone(), (pack.clone(), reason.clone()));
                    }
                }
                Err(other) => return Err(other),
            }
            start = end;
        }
    }
    Ok(unit)
}
