//! The command line of `mars-agent`: every command, flag and argument, with its help.

use std::path::PathBuf;

use agent::restore::OnConflict;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "mars-agent",
    version,
    about = "Backup agent for azsim Recovery Services vaults (modelled on the MARS agent)"
)]
pub struct Cli {
    /// The agent's state directory.
    #[arg(long, global = true, env = "MARS_AGENT_HOME")]
    pub home: Option<PathBuf>,
    /// Print results as JSON.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
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
        /// Only the points that have reached the vault's secondary region (what a
        /// cross-region restore can use).
        #[arg(long)]
        secondary_region: bool,
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
        /// Restore from the vault's secondary region (cross-region restore: a GeoRedundant
        /// vault with Cross Region Restore enabled; works while the primary region is down).
        #[arg(long)]
        secondary_region: bool,
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
    /// Scheduled backups (MARS: Schedule Backup), run by `mars-agent service`.
    Schedule {
        #[command(subcommand)]
        action: ScheduleAction,
    },
    /// Upload bandwidth by work and non-work hours (MARS: Change Properties → Throttling).
    Throttle {
        #[command(subcommand)]
        action: ThrottleAction,
    },
    /// Run scheduled backups until SIGTERM or Ctrl-C (a foreground daemon for systemd or a
    /// container; one per agent home).
    Service,
    /// Backup and restore jobs of this server.
    Jobs,
    /// Registration status.
    Status,
    /// Unregister this server from its vault (its backups go with it).
    Unregister,
}

#[derive(Subcommand)]
pub enum ThrottleAction {
    /// Limit uploads: one rate in work hours on work days, another otherwise (512 Kbps to
    /// 1023 Mbps; e.g. 2MiB/s, 16Mbps).
    Set {
        /// Work hours, UTC on the service's clock (e.g. 09:00-18:00).
        #[arg(long, default_value = "09:00-18:00")]
        work_hours: String,
        /// Work days (e.g. mon-fri, or mon,wed,fri).
        #[arg(long, default_value = "mon-fri")]
        work_days: String,
        /// Upload rate during work hours.
        #[arg(long)]
        work_rate: String,
        /// Upload rate outside work hours.
        #[arg(long)]
        non_work_rate: String,
    },
    /// The throttle in force.
    Show,
    /// Upload at full speed.
    Off,
}

#[derive(Subcommand)]
pub enum ScheduleAction {
    /// Back a folder up at these times (UTC, on the service's clock), daily or on chosen
    /// weekdays; the schedule is also the item's policy schedule on the vault.
    Set {
        /// The folder to back up.
        #[arg(long)]
        include: PathBuf,
        /// Glob patterns to leave out (matched on names and relative paths).
        #[arg(long, num_args = 1..)]
        exclude: Vec<String>,
        /// One to three times a day, HH:MM (e.g. 09:00,13:00,21:00).
        #[arg(long, value_delimiter = ',', required = true)]
        times: Vec<String>,
        /// Only on these weekdays (e.g. mon,wed,fri); every day when absent.
        #[arg(long, value_delimiter = ',')]
        days: Vec<String>,
    },
    /// The scheduled folders.
    Show,
    /// Stop scheduling a folder (its data and policy stay on the vault).
    Clear {
        /// The scheduled folder.
        #[arg(long)]
        include: PathBuf,
    },
}

#[derive(Subcommand)]
pub enum PolicyAction {
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
