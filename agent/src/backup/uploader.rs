//! Sealing (zstd, AES-256-GCM) on one worker per core, packing sealed chunks into ~12 MiB
//! packs, and uploading each as the next fills, paced by the throttle.

use std::sync::mpsc::{Receiver, SyncSender};
use std::sync::{Arc, Mutex};

use backup_protocol::PackBuilder;
use bytes::Bytes;
use tokio::runtime::Handle;

use crate::agent::Agent;
use crate::error::{AgentError, Result};
use crate::sealing::Sealer;

use super::fail;
use super::producer::Group;

/// Packs of about 12 MiB: one uploading and one filling is 24 MiB of the backup's memory
/// (16 MiB, restic's size, put peak RSS above restic's once the dictionaries came).
const PACK_TARGET: usize = 12 * 1024 * 1024;

/// Pack uploads in flight at once.
const UPLOADS_IN_FLIGHT: usize = 2;

/// Sealed chunks (id, blob) of one group, in order.
pub type Sealed = Vec<(String, Vec<u8>)>;

pub fn seal_worker(sealer: &Sealer, rx: &Mutex<Receiver<Group>>, tx: &SyncSender<Sealed>) {
    loop {
        let next = rx.lock().unwrap_or_else(|p| p.into_inner()).recv();
        let Ok(group) = next else { return };
        let sealed = group
            .into_iter()
            .map(|(id, data)| {
                let blob = sealer.seal(&id, &data);
                (id, blob)
            })
            .collect();
        if tx.send(sealed).is_err() {
            return;
        }
    }
}

pub fn upload_packs(
    agent: &Arc<Agent>,
    runtime: &Handle,
    rx: Receiver<Sealed>,
    uploaded: &Mutex<(u64, u64, u64)>,
    failure: &Mutex<Option<AgentError>>,
) {
    let mut pack = PackBuilder::default();
    let mut chunks = 0u64;
    let mut in_flight = std::collections::VecDeque::new();
    let settle =
        |handle: tokio::task::JoinHandle<Result<(u64, u64)>>| match runtime.block_on(handle) {
            Ok(Ok((chunks, size))) => {
                let mut totals = uploaded.lock().unwrap_or_else(|p| p.into_inner());
                totals.0 += chunks;
                totals.1 += size;
                totals.2 += 1;
                true
            }
            Ok(Err(e)) => {
                fail(failure, e);
                false
            }
            Err(e) => {
                fail(
                    failure,
                    AgentError::Service(format!("an upload stopped: {e}")),
                );
                false
            }
        };
    let start = |pack: PackBuilder, chunks: u64| {
        let agent = agent.clone();
        runtime.spawn(async move {
            let (id, parts) = pack.finish_parts();
            let size = parts.iter().map(|p| p.len() as u64).sum();
            let service_now = chrono::DateTime::from_timestamp(agent.vault.service().now(), 0)
                .unwrap_or_default();
            agent.pacer.admit(size, service_now).await;
            agent.vault.put_pack(&id, parts).await?;
            Ok((chunks, size))
        })
    };
    for (id, blob) in rx.into_iter().flatten() {
        pack.add(id, Bytes::from(blob));
        chunks += 1;
        if pack.len() >= PACK_TARGET {
            in_flight.push_back(start(std::mem::take(&mut pack), chunks));
            chunks = 0;
            while in_flight.len() >= UPLOADS_IN_FLIGHT {
                if !settle(in_flight.pop_front().expect("non-empty")) {
                    return;
                }
            }
        }
    }
    if !pack.is_empty() {
        in_flight.push_back(start(pack, chunks));
    }
    while let Some(handle) = in_flight.pop_front() {
        if !settle(handle) {
            return;
        }
    }
}
