//! `mars-agent`: install, register, back up and restore against an azsim vault.
//!
//! Exit codes: 0 success; 1 completed with warnings (some files not backed up); 2 bad
//! usage or credentials; 4 wrong passphrase; 5 the service refused or could not be
//! reached (or a check-network step failed); 6 backup data failed verification; 7 a local file could not be read or written.

use std::path::PathBuf;

use agent::agent::{self as registered, Agent};
use agent::config::{AgentConfig, Home, create_private_dir};
use agent::error::{AgentError, Result};
use agent::restore::OnConflict;
use clap::{Parser, Subcommand};
use serde_json::{Value, json};

#[derive(Parser)]
#[command(
    name = "mars-agent",
    version,
    about = "Backup agent for azsim Recovery Services vaults (modelled on the MARS agent)"
)]
struct Cli {
    /// The agent's state directory.
    #[arg(long, global = true, env = "MARS_AGENT_HOME")]
    home: Option<PathBuf>,
    /// Print results as JSON.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write the agent configuration.
    Install {
        /// Cache directory (the unchanged-file index lives here).
        #[arg(long)]
        cache_dir: PathBuf,
        /// HTTP(S) proxy for every connection.
        #[arg(long)]
        proxy: Option<String>,
        /// CA certificate to trust (azsim's development CA).
        #[arg(long, env = "MARS_AGENT_CA_FILE")]
        ca_file: Option<PathBuf>,
    },
    /// Check every endpoint the agent needs: DNS, TCP, TLS trust and sign-in.
    CheckNetwork {
        /// Vault credentials to check with (default: this machine's registration).
        #[arg(long)]
        vault_credentials: Option<PathBuf>,
        /// A Key Vault to check as well.
        #[arg(long)]
        key_vault_uri: Option<String>,
    },
    /// Register this machine with a vault, using a vault credentials file.
    Register {
        /// The `.VaultCredentials` file downloaded from the vault (valid 10 days).
        #[arg(long)]
        vault_credentials: PathBuf,
        /// File holding the passphrase (at least 16 ASCII characters).
        #[arg(
            long,
            conflicts_with = "generate_passphrase",
            required_unless_present = "generate_passphrase"
        )]
        passphrase_file: Option<PathBuf>,
        /// Generate a passphrase and write it to this new file (keep it safe; an existing
        /// file is never overwritten).
        #[arg(long)]
        generate_passphrase: Option<PathBuf>,
        /// Name of this server in the vault (default: the host name).
        #[arg(long)]
        server_name: Option<String>,
        /// Save the passphrase as a secret in this Key Vault (through the vault's managed
        /// identity, which needs the `set` secret permission there).
        #[arg(long)]
        key_vault_uri: Option<String>,
    },
    /// Back up now.
    Backup {
        /// Folders (or files) to back up; each becomes a protected item.
        #[arg(long, required = true, num_args = 1..)]
        include: Vec<PathBuf>,
        /// Glob patterns to leave out (matched on names and relative paths).
        #[arg(long, num_args = 1..)]
        exclude: Vec<String>,
        /// Keep the recovery point until this date (YYYY-MM-DD).
        #[arg(long)]
        retain_until: Option<String>,
    },
    /// List recovery points.
    RecoveryPoints {
        /// List another server's recovery points (servers of one vault may restore each
        /// other's data with the passphrase).
        #[arg(long)]
        from_server: Option<String>,
    },
    /// List the entries of a recovery point.
    Ls {
        /// The recovery point (from `recovery-points`).
        recovery_point: String,
        /// Only entries under this path: relative to the backed-up folder, or its original
        /// absolute path.
        path: Option<String>,
        /// A recovery point of another server of the vault (needs its passphrase).
        #[arg(long, requires = "passphrase_file")]
        from_server: Option<String>,
        /// The passphrase of the server whose backup is read (checked when given).
        #[arg(long)]
        passphrase_file: Option<PathBuf>,
    },
    /// Restore from a recovery point.
    Restore {
        /// The recovery point (from `recovery-points`).
        recovery_point: String,
        /// What to restore (default: everything): paths relative to the backed-up folder,
        /// or their original absolute paths.
        paths: Vec<String>,
        /// Restore into this directory (an alternate location).
        #[arg(
            long,
            conflicts_with = "original",
            required_unless_present = "original"
        )]
        target: Option<PathBuf>,
        /// Restore to the original location.
        #[arg(long)]
        original: bool,
        /// What to do when a restored name exists: copy (restore beside it as
        /// `name (restored N)`), overwrite, or skip.
        #[arg(long, value_enum, default_value = "copy")]
        on_conflict: OnConflict,
        /// Restore another server's backup (needs that server's passphrase).
        #[arg(long, requires = "passphrase_file")]
        from_server: Option<String>,
        /// The passphrase of the server whose backup is restored (checked when given).
        #[arg(long)]
        passphrase_file: Option<PathBuf>,
    },
    /// The retention policy of a protected folder (MARS: Schedule Backup → Select
    /// Retention Policy).
    Policy {
        #[command(subcommand)]
        action: PolicyAction,
    },
    /// Stop protecting a folder, keeping its backup data or deleting it.
    StopProtection {
        /// The protected folder.
        #[arg(long)]
        include: PathBuf,
        /// Delete the backup data too (kept for the vault's soft-delete days when soft
        /// delete is on; refused in an immutable vault while points have not expired).
        #[arg(long, requires = "security_pin")]
        delete_data: bool,
        /// The vault's security PIN (generate it on the vault: POST …/backupSecurityPIN);
        /// needed to delete data.
        #[arg(long)]
        security_pin: Option<String>,
    },
    /// Bring back soft-deleted backup data of a folder.
    Undelete {
        /// The folder whose data was deleted.
        #[arg(long)]
        include: PathBuf,
    },
    /// Check that every chunk this server's recovery points need is in the vault; with
    /// --read-data, download and verify each one (like `restic check --read-data`).
    Check {
        /// Download and verify every chunk (authenticated decryption and id check).
        #[arg(long)]
        read_data: bool,
        /// Only this recovery point.
        #[arg(long)]
        recovery_point: Option<String>,
    },
    /// Change the passphrase: the master key is re-wrapped, nothing is re-encrypted (MARS:
    /// Change Properties → Encryption).
    ChangePassphrase {
        /// The vault's security PIN (POST …/backupSecurityPIN).
        #[arg(long)]
        security_pin: String,
        /// File holding the new passphrase (at least 16 ASCII characters).
        #[arg(long)]
        passphrase_file: PathBuf,
        /// Save the new passphrase in this Key Vault too (through the vault's identity).
        #[arg(long)]
        key_vault_uri: Option<String>,
    },
    /// Backup and restore jobs of this server.
    Jobs,
    /// Registration status.
    Status,
    /// Unregister this server from its vault (its backups go with it).
    Unregister,
}

#[derive(Subcommand)]
enum PolicyAction {
    /// Store a retention policy on the vault and bind it to a folder. Weekly, monthly and
    /// yearly points are those of `--day` (monthly: the first such day of the month;
    /// yearly: the first such day of `--month`).
    Set {
        /// The protected folder.
        #[arg(long)]
        include: PathBuf,
        /// The policy's name on the vault.
        #[arg(long)]
        name: String,
        /// Keep daily points this many days (7-9999).
        #[arg(long)]
        daily: Option<u32>,
        /// Keep weekly points this many weeks (4-5163).
        #[arg(long)]
        weekly: Option<u32>,
        /// Keep monthly points this many months (3-1188).
        #[arg(long)]
        monthly: Option<u32>,
        /// Keep yearly points this many years (1-99).
        #[arg(long)]
        yearly: Option<u32>,
        /// The weekday of weekly, monthly and yearly points.
        #[arg(long, default_value = "sunday")]
        day: String,
        /// The month of yearly points.
        #[arg(long, default_value = "january")]
        month: String,
        /// Backup times of the schedule, UTC (one to three).
        #[arg(long, value_delimiter = ',', default_value = "21:00")]
        times: Vec<String>,
    },
    /// Each protected folder with its policy, protection and deletion state.
    Show,
}

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
            let registration = home.load().ok().and_then(|c| c.registration);
            let config = AgentConfig {
                cache_dir: cache_dir.clone(),
                proxy,
                ca_file,
                registration,
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
        Command::RecoveryPoints { from_server } => {
            let agent = Agent::open(&home, !json_output)?;
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
        } => {
            let agent = Agent::open(&home, !json_output)?;
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
