//! Reading changed files and cutting them into chunks (FastCDC, ~1 MiB; small files read
//! whole), naming each by keyed BLAKE3, and asking the vault once per batch which chunks it
//! lacks: only those go on to the sealers. The question is asked on its own thread
//! ([`filter_missing`]) while the next batch is read.

use std::collections::HashSet;
use std::sync::Mutex;
use std::sync::mpsc::{Receiver, SyncSender};

use bytes::Bytes;

use tokio::runtime::Handle;

use crate::agent::Agent;
use crate::error::AgentError;
use crate::walk::Walked;

use super::fail;

const MIN_CHUNK: usize = 256 * 1024;

const AVG_CHUNK: usize = 1024 * 1024;

const MAX_CHUNK: usize = 4 * 1024 * 1024;

/// Files up to this size are read whole instead of streamed; their chunks are slices of
/// that one buffer, not copies.
const WHOLE_FILE: u64 = 8 * 1024 * 1024;

/// Chunk bytes held while the vault is asked which it lacks: with the queues to the sealers
/// and the uploader, this bounds the agent's memory (peak RSS is compared with restic's).
const BATCH_BYTES: usize = 4 * 1024 * 1024;

const BATCH_CHUNKS: usize = 512;

/// A batch of new chunks (id, plaintext) for the vault to filter.
pub type Batch = Vec<(String, Bytes)>;

/// Chunks handed to a sealer at once: a queue operation per chunk (20,000 small files)
/// cost more in thread wake-ups than the sealing of small chunks.
pub type Group = Vec<(String, Bytes)>;

const GROUP_BYTES: usize = 1024 * 1024;

const GROUP_CHUNKS: usize = 64;

/// Reads and chunks changed files and hands batches of chunks not seen in this run to
/// [`filter_missing`].
pub struct Producer<'a> {
    pub agent: &'a Agent,
    pub batch_tx: SyncSender<Batch>,
    /// Ids already sent or known to the vault in this run.
    pub known: HashSet<String>,
    pub batch: Batch,
    pub batch_bytes: usize,
}

impl Producer<'_> {
    pub fn file(&mut self, walked: &Walked) -> std::io::Result<Vec<String>> {
        let mut ids = Vec::new();
        if walked.meta.len() <= WHOLE_FILE {
            // Small and medium files are read at once (no per-file stream buffer).
            let data = Bytes::from(std::fs::read(&walked.abs)?);
            if data.len() <= MIN_CHUNK {
                if !data.is_empty() {
                    self.chunk(data, &mut ids);
                }
                return Ok(ids);
            }
            let cuts = fastcdc::v2020::FastCDC::new(&data, MIN_CHUNK, AVG_CHUNK, MAX_CHUNK);
            for cut in cuts {
                self.chunk(data.slice(cut.offset..cut.offset + cut.length), &mut ids);
            }
            return Ok(ids);
        }
        let file = std::fs::File::open(&walked.abs)?;
        let chunker = fastcdc::v2020::StreamCDC::new(file, MIN_CHUNK, AVG_CHUNK, MAX_CHUNK);
        for chunk in chunker {
            let chunk = chunk.map_err(|e| match e {
                fastcdc::v2020::Error::IoError(io) => io,
                other => std::io::Error::other(other.to_string()),
            })?;
            self.chunk(Bytes::from(chunk.data), &mut ids);
        }
        Ok(ids)
    }

    pub fn chunk(&mut self, data: Bytes, ids: &mut Vec<String>) {
        let id = self.agent.sealer.chunk_id(&data);
        ids.push(id.clone());
        if self.known.insert(id.clone()) {
            self.batch_bytes += data.len();
            self.batch.push((id, data));
            if self.batch_bytes >= BATCH_BYTES || self.batch.len() >= BATCH_CHUNKS {
                self.flush();
            }
        }
    }

    pub fn flush(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        self.batch_bytes = 0;
        // A closed channel means the filter stopped on a failure, which the caller sees.
        let _ = self.batch_tx.send(std::mem::take(&mut self.batch));
    }
}

/// Asks the vault which chunks of each batch it lacks (one query per batch) and sends
/// only those to the sealers.
pub fn filter_missing(
    agent: &Agent,
    runtime: &Handle,
    batches: Receiver<Batch>,
    seal_tx: SyncSender<Group>,
    failure: &Mutex<Option<AgentError>>,
) {
    for batch in batches {
        let ids: Vec<String> = batch.iter().map(|(id, _)| id.clone()).collect();
        let missing: HashSet<String> = match runtime.block_on(agent.vault.missing(ids)) {
            Ok(missing) => missing.into_iter().collect(),
            Err(e) => {
                fail(failure, e);
                return;
            }
        };
        let mut group = Group::new();
        let mut group_bytes = 0;
        for (id, data) in batch {
            if !missing.contains(&id) {
                continue;
            }
            group_bytes += data.len();
            group.push((id, data));
            if group_bytes >= GROUP_BYTES || group.len() >= GROUP_CHUNKS {
                group_bytes = 0;
                if seal_tx.send(std::mem::take(&mut group)).is_err() {
                    return;
                }
            }
        }
        if !group.is_empty() && seal_tx.send(group).is_err() {
            return;
        }
    }
}
