//! Fetching chunks for a restore: located in one query per unit, read as coalesced ranges
//! per pack (several at once, each decoded on a blocking thread as it arrives), then
//! authenticated under their ids and decompressed (zstd checks each frame's content
//! checksum; a check also recomputes each id). A chunk that fails verification is
//! reported, not fatal.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::Arc;

use crate::agent::Agent;
use crate::error::{AgentError, Result};
use crate::sealing::Sealer;

/// Largest single range read from a pack.
const RANGE_BYTES: u64 = 8 * 1024 * 1024;

/// Chunks of one unit: the verified plaintexts, and the chunks that failed (with the pack
/// they are in and why).
#[derive(Default)]
pub struct Unit {
    /// Plaintexts by id (empty when fetched only to verify).
    pub chunks: HashMap<String, bytes::Bytes>,
    /// Chunks that passed verification, and their plaintext bytes.
    pub verified: usize,
    pub bytes: u64,
    pub damaged: HashMap<String, (String, String)>,
}

pub type Fetched = Result<Unit>;

/// Whether verified plaintexts are kept (restore) or only counted (check).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    Data,
    Nothing,
}

/// Authenticates, decompresses and checks the chunks of one downloaded range (decrypted in
/// place: raw chunks stay slices of the range); a chunk that fails is reported, not fatal.
fn decode(
    sealer: &Sealer,
    buffer: Vec<u8>,
    range_start: u64,
    chunks: &[(String, u64, u64)],
    pack: &str,
    keep: Keep,
) -> Unit {
    let blobs: Vec<(String, usize, usize)> = chunks
        .iter()
        .map(|(id, offset, length)| {
            (
                id.clone(),
                (offset - range_start) as usize,
                *length as usize,
            )
        })
        .collect();
    let mut unit = Unit::default();
    // A check recomputes every id; a restore relies on authentication and zstd's checksums.
    for (id, opened) in sealer.open_all(buffer, &blobs, keep == Keep::Nothing) {
        match opened {
            Ok(data) => {
                unit.verified += 1;
                unit.bytes += data.len() as u64;
                if keep == Keep::Data {
                    unit.chunks.insert(id, data);
                }
            }
            Err(e) => {
                unit.damaged.insert(id, (pack.to_string(), e.to_string()));
            }
        }
    }
    unit
}

/// Fetches and verifies chunks: located in one query, read as coalesced ranges per pack.
pub async fn fetch_chunks<'a>(
    agent: &Arc<Agent>,
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
    fetch_located(agent, sealer, located, Keep::Data).await
}

/// Range reads of one unit in flight at once.
const RANGES_IN_FLIGHT: usize = 3;

/// A task aborted when its handle is dropped: a restore that stops (done, failed or
/// cancelled) leaves no download running behind it.
pub(crate) struct Task<T>(pub tokio::task::JoinHandle<T>);

impl<T> Drop for Task<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Jobs run as tasks, `ahead` of them at a time in their order, their results taken in
/// that order: the next ones download while the caller handles the current. Dropped, it
/// aborts the ones running.
pub(crate) struct Ahead<J>
where
    J: Iterator,
    J::Item: Future,
{
    jobs: J,
    running: VecDeque<Task<<J::Item as Future>::Output>>,
    ahead: usize,
}

impl<J> Ahead<J>
where
    J: Iterator,
    J::Item: Future + Send + 'static,
    <J::Item as Future>::Output: Send + 'static,
{
    pub fn new(jobs: J, ahead: usize) -> Self {
        Ahead {
            jobs,
            running: VecDeque::new(),
            ahead,
        }
    }

    /// The next job's result, `None` when all are done.
    pub async fn next(&mut self) -> Option<Result<<J::Item as Future>::Output>> {
        while self.running.len() < self.ahead {
            let Some(job) = self.jobs.next() else { break };
            self.running.push_back(Task(tokio::spawn(job)));
        }
        let mut task = self.running.pop_front()?;
        Some(
            (&mut task.0)
                .await
                .map_err(|e| AgentError::Service(format!("a download stopped: {e}"))),
        )
    }
}

/// One coalesced read: a range of a pack and the chunks inside it.
struct RangeRead {
    pack: String,
    start: u64,
    end: u64,
    chunks: Vec<(String, u64, u64)>,
}

/// Per pack, neighbouring chunks (gaps under 1 MiB) become one range of at most
/// [`RANGE_BYTES`].
fn coalesce(located: Vec<backup_protocol::ChunkLocation>) -> Vec<RangeRead> {
    let mut by_pack: HashMap<String, Vec<(String, u64, u64)>> = HashMap::new();
    for chunk in located {
        by_pack
            .entry(chunk.pack)
            .or_default()
            .push((chunk.id, chunk.offset, chunk.length));
    }
    let mut reads = Vec::new();
    for (pack, mut chunks) in by_pack {
        chunks.sort_by_key(|c| c.1);
        let mut start = 0;
        while start < chunks.len() {
            let mut end = start + 1;
            while end < chunks.len()
                && chunks[end].1 <= chunks[end - 1].1 + chunks[end - 1].2 + 1024 * 1024
                && chunks[end].1 + chunks[end].2 - chunks[start].1 <= RANGE_BYTES
            {
                end += 1;
            }
            reads.push(RangeRead {
                pack: pack.clone(),
                start: chunks[start].1,
                end: chunks[end - 1].1 + chunks[end - 1].2,
                chunks: chunks[start..end].to_vec(),
            });
            start = end;
        }
    }
    reads
}

/// Downloads one range and decodes its chunks off the async runtime.
async fn read_range(agent: Arc<Agent>, sealer: Sealer, read: RangeRead, keep: Keep) -> Fetched {
    match agent
        .vault
        .read_pack(&read.pack, read.start, read.end)
        .await
    {
        Ok(buffer) => tokio::task::spawn_blocking(move || {
            Ok(decode(
                &sealer,
                buffer,
                read.start,
                &read.chunks,
                &read.pack,
                keep,
            ))
        })
        .await
        .map_err(|e| AgentError::Integrity(format!("a decoder stopped: {e}")))?,
        // The pack is gone or shorter than its index: its chunks are damaged.
        Err(AgentError::NotFound(reason)) | Err(AgentError::Service(reason)) => {
            let mut part = Unit::default();
            for (id, _, _) in read.chunks {
                part.damaged.insert(id, (read.pack.clone(), reason.clone()));
            }
            Ok(part)
        }
        Err(other) => Err(other),
    }
}

/// Reads and verifies chunks whose places are known: neighbouring chunks of a pack come in
/// one range, [`RANGES_IN_FLIGHT`] ranges at a time.
pub async fn fetch_located(
    agent: &Arc<Agent>,
    sealer: &Sealer,
    located: Vec<backup_protocol::ChunkLocation>,
    keep: Keep,
) -> Fetched {
    let mut unit = Unit::default();
    let reads = coalesce(located)
        .into_iter()
        .map(|read| read_range(agent.clone(), sealer.clone(), read, keep));
    let mut reads = Ahead::new(reads, RANGES_IN_FLIGHT);
    while let Some(part) = reads.next().await {
        let part = part??;
        unit.chunks.extend(part.chunks);
        unit.verified += part.verified;
        unit.bytes += part.bytes;
        unit.damaged.extend(part.damaged);
    }
    Ok(unit)
}
