//! `mars-agent`: install, register, back up and restore against an azsim vault.
//!
//! Exit codes: 0 success; 1 completed with warnings (some files not backed up); 2 bad
//! usage or credentials; 4 wrong passphrase; 5 the service refused or could not be
//! reached (or a check-network step failed); 6 backup data failed verification; 7 a local file could not be read or written.

mod cli;

use std::path::PathBuf;

use agent::agent::{self as registered, Agent};
use agent::config::{AgentConfig, Home, create_private_dir};
use agent::error::{AgentError, Result};
use clap::Parser;
use cli::{Cli, Command, PolicyAction, ScheduleAction, ThrottleAction};
use serde_json::{Value, json};

fn home(cli: &Cli) -> Home {
    let dir = cli.home.clone().unwrap_or_else(|| {
        std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("."))
            .join(".mars-agent")
    });
    Home::new(dir)
}

use agent::agent::read_passphrase;

fn print(json_output: bool, value: &Value, human: &str) {
    if json_output {
        println!(
            "{}",
            serde_json::to_string_pretty(value).unwrap_or_default()
        );
    } else {
        println!("{human}");
    }
}

fn parse_date(text: &str) -> Result<i64> {
    chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .map(|d| {
            d.and_hms_opt(23, 59, 59)
                .expect("valid time")
                .and_utc()
                .timestamp()
        })
        .map_err(|_| {
            AgentError::Usage(format!(
                "--retain-until '{text}' must be a date like 2027-12-31"
            ))
        })
}

async fn run(cli: Cli) -> Result<i32> {
    let home = home(&cli);
    let json_output = cli.json;
    match cli.command {
        Command::Install {
            cache_dir,
            proxy,
            ca_file,
        } => {
            create_private_dir(&cache_dir)?;
            let cache_dir =
                std::fs::canonicalize(&cache_dir).map_err(|e| AgentError::io(&cache_dir, e))?;
            // Stored absolute: the agent runs from any directory afterwards.
            let ca_file = ca_file
                .map(|f| std::fs::canonicalize(&f).map_err(|e| AgentError::io(&f, e)))
                .transpose()?;
            let previous = home.load().ok();
            let config = AgentConfig {
                cache_dir: cache_dir.clone(),
                proxy,
                ca_file,
                registration: previous.as_ref().and_then(|c| c.registration.clone()),
                schedules: previous
                    .as_ref()
                    .map(|c| c.schedules.clone())
                    .unwrap_or_default(),
                throttle: previous.and_then(|c| c.throttle),
            };
            home.save(&config)?;
            print(
                json_output,
                &json!({"home": home.dir, "cacheDir": cache_dir}),
                &format!(
                    "installed: state in {}, cache in {}",
                    home.dir.display(),
                    cache_dir.display()
                ),
            );
        }
        Command::CheckNetwork {
            vault_credentials,
            key_vault_uri,
        } => {
            return check_network(&home, json_output, vault_credentials, key_vault_uri).await;
        }
        Command::Register {
            vault_credentials,
            passphrase_file,
            generate_passphrase,
            server_name,
            key_vault_uri,
        } => {
            let passphrase = match (&passphrase_file, &generate_passphrase) {
                (Some(file), _) => read_passphrase(file)?,
                (None, Some(out)) => {
                    // Written first (so the passphrase is safe before anything depends on
                    // it), never over an existing file, and removed if registration fails.
                    let phrase = agent::keys::generate_passphrase()?;
                    agent::config::write_new_private(out, phrase.as_bytes())?;
                    phrase
                }
                (None, None) => unreachable!("clap requires one"),
            };
            let name = server_name.unwrap_or_else(|| {
                std::fs::read_to_string("/etc/hostname")
                    .map(|h| h.trim().to_string())
                    .unwrap_or_else(|_| "localhost".into())
            });
            let registration = match registered::register(
                &home,
                &vault_credentials,
                &passphrase,
                &name,
                key_vault_uri.as_deref(),
            )
            .await
            {
                Ok(registration) => registration,
                Err(error) => {
                    if let Some(out) = &generate_passphrase {
                        let _ = std::fs::remove_file(out);
                    }
                    return Err(error);
                }
            };
            print(
                json_output,
                &json!({"serverName": registration.server_name, "vault": registration.vault, "resourceGroup": registration.resource_group, "clientId": registration.client_id}),
                &format!(
                    "registered {} to vault {} (resource group {})",
                    registration.server_name, registration.vault, registration.resource_group
                ),
            );
        }
        Command::Backup {
            include,
            exclude,
            retain_until,
        } => {
            let agent = Agent::open(&home, !json_output)?;
            let excludes = exclude
                .iter()
                .map(|p| {
                    glob::Pattern::new(p)
                        .map_err(|e| AgentError::Usage(format!("--exclude '{p}': {e}")))
                })
                .collect::<Result<Vec<_>>>()?;
            let retain = retain_until.as_deref().map(parse_date).transpose()?;
            let mut reports = Vec::new();
            let mut warned = false;
            for path in include {
                let report =
                    agent::backup::run(agent.clone(), &path, excludes.clone(), retain).await?;
                warned |= !report.warnings.is_empty();
                if !json_output {
                    println!(
                        "{}: {} -> recovery point {} ({} files, {} read, {} bytes uploaded in {} packs, {:.2} s)",
                        report.path,
                        report.status,
                        report.recovery_point,
                        report.files,
                        report.files_read,
                        report.bytes_uploaded,
                        report.packs_uploaded,
                        report.seconds
                    );
                    for warning in &report.warnings {
                        eprintln!("warning: {warning}");
                    }
                }
                reports.push(serde_json::to_value(&report).unwrap_or_default());
            }
            if json_output {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&reports).unwrap_or_default()
                );
            }
            return Ok(if warned { 1 } else { 0 });
        }
        Command::RecoveryPoints {
            from_server,
            secondary_region,
        } => {
            let agent = Agent::open_in(&home, !json_output, secondary_region)?;
            let server = from_server.unwrap_or_else(|| agent.registration.server_name.clone());
            let points = agent.recovery_points(&server).await?;
            let (value, human) = agent::output::recovery_points(&points);
            print(json_output, &value, &human);
        }
        Command::Ls {
            recovery_point,
            path,
            from_server,
            passphrase_file,
        } => {
            let agent = Agent::open(&home, !json_output)?;
            let (server, sealer) = agent
                .source(from_server, passphrase_file.as_deref())
                .await?;
            let manifest = agent.manifest(&server, &recovery_point, &sealer).await?;
            let selections: Vec<String> = path.into_iter().collect();
            let entries: Vec<Value> = agent::restore::select(&manifest, &selections)?
                .iter()
                .map(|e| json!({"path": e.path, "kind": e.kind, "size": e.size, "mode": format!("{:o}", e.mode), "mtime": agent::output::rfc3339(&json!(e.mtime))}))
                .collect();
            let human = entries
                .iter()
                .map(|e| {
                    format!(
                        "{:>8} {:>12} {}",
                        e["kind"].as_str().unwrap_or(""),
                        e["size"],
                        e["path"].as_str().unwrap_or("")
                    )
                })
                .collect::<Vec<_>>()
                .join("\n");
            print(json_output, &Value::Array(entries), &human);
        }
        Command::Restore {
            recovery_point,
            paths,
            target,
            original,
            on_conflict,
            from_server,
            passphrase_file,
            secondary_region,
        } => {
            share_one_malloc_arena(true);
            let agent = Agent::open_in(&home, !json_output, secondary_region)?;
            let (server, sealer) = agent
                .source(from_server, passphrase_file.as_deref())
                .await?;
            // The passphrase is checked (the key unwrapped) before anything is written.
            let manifest = agent.manifest(&server, &recovery_point, &sealer).await?;
            let target = match (target, original) {
                (Some(target), _) => target,
                (None, true) => PathBuf::from(&manifest.root),
                (None, false) => unreachable!("clap requires one"),
            };
            let report = agent::restore::run(
                agent.clone(),
                sealer,
                manifest,
                &recovery_point,
                &paths,
                &target,
                on_conflict,
            )
            .await?;
            print(
                json_output,
                &serde_json::to_value(&report).unwrap_or_default(),
                &format!(
                    "restored {} files, {} directories, {} links ({} bytes, {} skipped) to {} in {:.2} s",
                    report.files,
                    report.directories,
                    report.symlinks,
                    report.bytes,
                    report.skipped,
                    report.target,
                    report.seconds
                ),
            );
        }
        Command::Policy { action } => {
            let agent = Agent::open(&home, !json_output)?;
            match action {
                PolicyAction::Set {
                    include,
                    name,
                    daily,
                    weekly,
                    monthly,
                    yearly,
                    day,
                    month,
                    times,
                } => {
                    let choice = agent::protection::RetentionChoice {
                        daily_days: daily,
                        weekly_weeks: weekly,
                        monthly_months: monthly,
                        yearly_years: yearly,
                        day,
                        month,
                        times,
                    };
                    let bound = agent::protection::set_policy(
                        &agent,
                        &include,
                        &name,
                        &choice.to_policy()?,
                    )
                    .await?;
                    print(
                        json_output,
                        &bound,
                        &format!(
                            "{}: policy {name} (existing recovery points follow it)",
                            bound["path"].as_str().unwrap_or_default()
                        ),
                    );
                }
                PolicyAction::Show => {
                    let items = agent::protection::show(&agent).await?;
                    let human = items
                        .iter()
                        .map(|i| {
                            format!(
                                "{}  policy {}  {}  {} recovery points{}",
                                i["path"].as_str().unwrap_or(""),
                                i["policy"].as_str().unwrap_or(""),
                                i["protectionState"].as_str().unwrap_or(""),
                                i["recoveryPoints"],
                                if i["deletedAt"].is_null() {
                                    ""
                                } else {
                                    "  (data deleted: undelete to keep it)"
                                }
                            )
                        })
                        .collect::<Vec<_>>()
                        .join("\n");
                    print(json_output, &Value::Array(items), &human);
                }
            }
        }
        Command::StopProtection {
            include,
            delete_data,
            security_pin,
        } => {
            let agent = Agent::open(&home, !json_output)?;
            let stopped =
                agent::protection::stop(&agent, &include, delete_data, security_pin.as_deref())
                    .await?;
            let what = if delete_data {
                "protection stopped and backup data deleted"
            } else {
                "protection stopped; backup data kept"
            };
            print(
                json_output,
                &stopped,
                &format!("{}: {what}", stopped["path"].as_str().unwrap_or_default()),
            );
        }
        Command::Undelete { include } => {
            let agent = Agent::open(&home, !json_output)?;
            let undeleted = agent::protection::undelete(&agent, &include).await?;
            print(
                json_output,
                &undeleted,
                &format!(
                    "{}: backup data undeleted (protection stays stopped until the next backup)",
                    undeleted["path"].as_str().unwrap_or_default()
                ),
            );
        }
        Command::Check {
            read_data,
            recovery_point,
        } => {
            share_one_malloc_arena(false);
            let agent = Agent::open(&home, !json_output)?;
            let report = agent::check::run(agent, recovery_point.as_deref(), read_data).await?;
            print(
                json_output,
                &serde_json::to_value(&report).unwrap_or_default(),
                &format!(
                    "no errors: {} recovery points, {} chunks present{} ({:.2} s)",
                    report.recovery_points,
                    report.chunks,
                    if read_data {
                        format!(
                            ", {} read and verified ({} bytes)",
                            report.chunks_read, report.bytes_read
                        )
                    } else {
                        String::new()
                    },
                    report.seconds
                ),
            );
        }
        Command::ChangePassphrase {
            security_pin,
            passphrase_file,
            key_vault_uri,
        } => {
            let agent = Agent::open(&home, !json_output)?;
            let passphrase = read_passphrase(&passphrase_file)?;
            agent
                .change_passphrase(&home, &security_pin, &passphrase, key_vault_uri.as_deref())
                .await?;
            print(
                json_output,
                &json!({"server": agent.registration.server_name, "changed": true}),
                "passphrase changed: the new one opens every backup of this server; the old one no longer does",
            );
        }
        Command::Schedule { action } => match action {
            ScheduleAction::Set {
                include,
                exclude,
                times,
                days,
            } => {
                let agent = Agent::open(&home, !json_output)?;
                let schedule = agent::schedule::Schedule::new(&include, exclude, &times, &days)?;
                let set = agent::schedule::set(&agent, &home, schedule).await?;
                print(
                    json_output,
                    &set,
                    &format!(
                        "{}: backed up at {} UTC{} by `mars-agent service` (vault policy {})",
                        set["path"].as_str().unwrap_or_default(),
                        times.join(", "),
                        if days.is_empty() {
                            String::new()
                        } else {
                            format!(" on {}", days.join(", "))
                        },
                        set["policy"].as_str().unwrap_or_default()
                    ),
                );
            }
            ScheduleAction::Show => {
                let schedules = home.load()?.schedules;
                let human = schedules
                    .iter()
                    .map(|s| {
                        format!(
                            "{}  at {}  {}",
                            s.path.display(),
                            s.times.join(","),
                            if s.days.is_empty() {
                                "every day".to_string()
                            } else {
                                s.days.join(",")
                            }
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n");
                print(
                    json_output,
                    &serde_json::to_value(&schedules).unwrap_or_default(),
                    &human,
                );
            }
            ScheduleAction::Clear { include } => {
                let removed = agent::schedule::clear(&home, &include)?;
                if !removed {
                    return Err(AgentError::Usage(format!(
                        "{} has no schedule (see `mars-agent schedule show`)",
                        include.display()
                    )));
                }
                print(
                    json_output,
                    &json!({"cleared": include}),
                    &format!("{}: no longer scheduled", include.display()),
                );
            }
        },
        Command::Throttle { action } => {
            let mut config = home.load()?;
            match action {
                ThrottleAction::Set {
                    work_hours,
                    work_days,
                    work_rate,
                    non_work_rate,
                } => {
                    let (work_start, work_end) = agent::throttle::parse_hours(&work_hours)?;
                    config.throttle = Some(agent::throttle::Throttle {
                        work_start,
                        work_end,
                        work_days: agent::throttle::parse_days(&work_days)?,
                        work_rate: agent::throttle::parse_rate(&work_rate)?,
                        non_work_rate: agent::throttle::parse_rate(&non_work_rate)?,
                    });
                    home.save(&config)?;
                }
                ThrottleAction::Off => {
                    config.throttle = None;
                    home.save(&config)?;
                }
                ThrottleAction::Show => {}
            }
            let human = match &config.throttle {
                Some(throttle) => format!("throttled: {}", throttle.describe()),
                None => "not throttled: uploads run at full speed".to_string(),
            };
            print(
                json_output,
                &serde_json::to_value(&config.throttle).unwrap_or_default(),
                &human,
            );
        }
        Command::Service => {
            agent::service::run(&home, json_output).await?;
        }
        Command::Jobs => {
            let agent = Agent::open(&home, !json_output)?;
            let jobs = agent.vault.jobs().await?;
            let (value, human) = agent::output::jobs(&jobs);
            print(json_output, &value, &human);
        }
        Command::Status => {
            let config = home.load()?;
            let value = json!({
                "home": home.dir,
                "cacheDir": config.cache_dir,
                "registered": config.registration.is_some(),
                "serverName": config.registration.as_ref().map(|r| r.server_name.clone()),
                "vault": config.registration.as_ref().map(|r| r.vault.clone()),
                "resourceGroup": config.registration.as_ref().map(|r| r.resource_group.clone()),
                "serviceUrl": config.registration.as_ref().map(|r| r.service_url.clone()),
            });
            let human = match &config.registration {
                Some(r) => format!(
                    "registered: {} in vault {} (resource group {}), service {}",
                    r.server_name, r.vault, r.resource_group, r.service_url
                ),
                None => "installed, not registered".to_string(),
            };
            print(json_output, &value, &human);
        }
        Command::Unregister => {
            let agent = Agent::open(&home, !json_output)?;
            agent.unregister(&home).await?;
            print(
                json_output,
                &json!({"unregistered": agent.registration.server_name}),
                &format!("unregistered {}", agent.registration.server_name),
            );
        }
    }
    Ok(0)
}

async fn check_network(
    home: &Home,
    json_output: bool,
    vault_credentials: Option<PathBuf>,
    key_vault_uri: Option<String>,
) -> Result<i32> {
    let checks =
        agent::network::check(home, vault_credentials.as_deref(), key_vault_uri.as_deref()).await?;
    let all_ok = checks.iter().all(|c| c.ok);
    if json_output {
        println!(
            "{}",
            serde_json::to_string_pretty(&checks).unwrap_or_default()
        );
    } else {
        for check in &checks {
            println!(
                "{:<4} {:<6} {}  {}",
                if check.ok { "PASS" } else { "FAIL" },
                check.step,
                check.endpoint,
                check.detail
            );
            if let Some(fix) = &check.fix {
                println!("            fix: {fix}");
            }
        }
    }
    Ok(if all_ok { 0 } else { 5 })
}

#[tokio::main]
async fn main() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let json_output = std::env::args().any(|a| a == "--json");
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) if json_output && error.use_stderr() => {
            let message = error.render().to_string();
            let value =
                json!({"error": {"code": "Usage", "message": message.trim(), "exitCode": 2}});
            println!(
                "{}",
                serde_json::to_string_pretty(&value).unwrap_or_default()
            );
            std::process::exit(2);
        }
        Err(error) => error.exit(),
    };
    let code = match run(cli).await {
        Ok(code) => code,
        Err(error) => {
            if json_output {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&error.to_json()).unwrap_or_default()
                );
            } else {
                eprintln!("error: {error}");
            }
            error.exit_code()
        }
    };
    std::process::exit(code);
}

/// For restore and check: one malloc arena for every thread. glibc gives each thread its
/// own arena, and the downloaded ranges and chunks that the fetch tasks, decoders and
/// writers pass between them are freed into other threads' arenas and stay there: a full
/// restore of the benchmark set peaked at 156–170 MiB of RSS that way, 89–95 MiB with one
/// arena, in the same time (2.3 s).
///
/// A restore also fixes when memory is given back (`keep_heap`): with glibc's moving
/// thresholds, decompressed chunks (up to 4 MiB) came from heap the allocator had just
/// given back, a page fault per 4 KiB (5 % of a restore's CPU). Below 4 MiB buffers now come
/// from the heap, which keeps up to 16 MiB free before trimming; the 8 MiB ranges are mapped
/// and unmapped whole. Six restores each: 9 % less CPU, the same peak RSS. A check reads
/// whole 12 MiB packs, which the moving thresholds keep on the heap: fixed, they cost it 7 %
/// more CPU in page faults, so it keeps glibc's.
fn share_one_malloc_arena(keep_heap: bool) {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only sets tunables of the allocator; it takes the allocator's own lock
    // and any value is valid.
    unsafe {
        nix::libc::mallopt(nix::libc::M_ARENA_MAX, 1);
        if keep_heap {
            nix::libc::mallopt(nix::libc::M_MMAP_THRESHOLD, 4 << 20);
            nix::libc::mallopt(nix::libc::M_TRIM_THRESHOLD, 16 << 20);
        }
    }
    #[cfg(not(target_env = "gnu"))]
    let _ = keep_heap;
}
