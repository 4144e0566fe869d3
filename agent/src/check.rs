//! `mars-agent check`, like `restic check`: every chunk this server's recovery points
//! reference must be in a pack the vault holds; with `--read-data`, every such chunk is
//! downloaded, authenticated and checked against its id. Damage is reported with the
//! packs, chunks and files it affects.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde::Serialize;

use crate::agent::Agent;
use crate::error::{AgentError, Result};
use crate::restore::DamagedFile;
use crate::restore::fetch::{Ahead, Keep, fetch_located};

/// Packs downloaded and verified at once by `--read-data`.
const PACKS_IN_FLIGHT: usize = 2;

#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckReport {
    pub recovery_points: usize,
    pub chunks: usize,
    /// Chunks downloaded and verified (`--read-data`).
    pub chunks_read: usize,
    pub bytes_read: u64,
    /// Files that depend on a missing or damaged chunk.
    pub damaged: Vec<DamagedFile>,
    pub seconds: f64,
}

/// Checks one recovery point or all of this server's.
pub async fn run(
    agent: Arc<Agent>,
    recovery_point: Option<&str>,
    read_data: bool,
) -> Result<CheckReport> {
    let started = std::time::Instant::now();
    let server = agent.registration.server_name.clone();
    let mut points: Vec<String> = agent
        .recovery_points(&server)
        .await?
        .into_iter()
        .map(|p| p.name)
        .collect();
    if let Some(only) = recovery_point {
        if !points.iter().any(|p| p == only) {
            return Err(AgentError::NotFound(format!(
                "recovery point {only} is not one of server {server}'s"
            )));
        }
        points = vec![only.to_string()];
    }
    // Which files of which points use each chunk.
    let mut users: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for point in &points {
        let manifest = agent.manifest(&server, point, &agent.sealer).await?;
        if read_data {
            crate::dictionary::load(&agent, &agent.sealer, &manifest.dictionaries).await?;
        }
        for dictionary in &manifest.dictionaries {
            users
                .entry(dictionary.clone())
                .or_default()
                .push(format!("{point}:(compression dictionary)"));
        }
        for entry in &manifest.entries {
            for chunk in &entry.chunks {
                users
                    .entry(chunk.clone())
                    .or_default()
                    .push(format!("{point}:{}", entry.path));
            }
        }
    }
    let mut report = CheckReport {
        recovery_points: points.len(),
        chunks: users.len(),
        ..CheckReport::default()
    };
    let ids: Vec<String> = users.keys().cloned().collect();
    let mut missing = BTreeSet::new();
    for batch in ids.chunks(2048) {
        missing.extend(agent.vault.missing(batch.to_vec()).await?);
    }
    let mut bad: Vec<(String, String, String)> = missing
        .iter()
        .map(|id| {
            (
                id.clone(),
                String::new(),
                "no pack of the vault holds this chunk".to_string(),
            )
        })
        .collect();
    if read_data {
        // Read pack by pack, in offset order: neighbouring chunks come in one range.
        let present: Vec<String> = ids
            .iter()
            .filter(|id| !missing.contains(*id))
            .cloned()
            .collect();
        let mut by_pack: BTreeMap<String, Vec<backup_protocol::ChunkLocation>> = BTreeMap::new();
        for batch in present.chunks(2048) {
            for location in agent.vault.locate(batch.to_vec()).await? {
                by_pack
                    .entry(location.pack.clone())
                    .or_default()
                    .push(location);
            }
        }
        // Two packs at a time (each in concurrent ranges): downloading one while the other
        // is decoded keeps both the network and the cores busy.
        let packs = by_pack.into_values().map(|chunks| {
            let agent = agent.clone();
            async move { fetch_located(&agent, &agent.sealer, chunks, Keep::Nothing).await }
        });
        let mut packs = Ahead::new(packs, PACKS_IN_FLIGHT);
        while let Some(unit) = packs.next().await {
            let unit = unit??;
            report.chunks_read += unit.verified;
            report.bytes_read += unit.bytes;
            for (id, (pack, reason)) in unit.damaged {
                bad.push((id, pack, reason));
            }
        }
    }
    for (chunk, pack, reason) in bad {
        for path in users.get(&chunk).into_iter().flatten() {
            report.damaged.push(DamagedFile {
                path: path.clone(),
                pack: pack.clone(),
                chunk: chunk.clone(),
                reason: reason.clone(),
            });
        }
    }
    report.seconds = started.elapsed().as_secs_f64();
    if !report.damaged.is_empty() {
        let mut lines = vec![format!(
            "{} file(s) in {} recovery point(s) depend on missing or damaged backup data:",
            report.damaged.len(),
            report.recovery_points
        )];
        for file in &report.damaged {
            lines.push(format!(
                "  {}: chunk {}{}: {}",
                file.path,
                file.chunk,
                if file.pack.is_empty() {
                    String::new()
                } else {
                    format!(" in pack {}", file.pack)
                },
                file.reason
            ));
        }
        return Err(AgentError::Damaged {
            message: lines.join("\n"),
            files: report.damaged,
        });
    }
    Ok(report)
}
