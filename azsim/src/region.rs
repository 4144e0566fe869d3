//! `azsim region [status | outage REGION | restore REGION]`: simulated regional outages and
//! the replication each vault still waits for (vault-server's `/admin/regions`).

use std::time::Duration;

use reqwest::Method;
use serde_json::Value;

use crate::Target;
use crate::api::Endpoints;

#[derive(clap::Args)]
pub struct RegionArgs {
    #[command(subcommand)]
    action: Option<RegionAction>,
    /// Print the answer as JSON.
    #[arg(long, global = true)]
    json: bool,
    #[command(flatten)]
    target: Target,
}

#[derive(clap::Subcommand)]
enum RegionAction {
    /// Outages, and each vault's region, paired region, redundancy and replication lag.
    Status,
    /// Take a region down: vaults there answer 503 RegionUnavailable on their data plane,
    /// replication into it waits; cross-region restore reads the paired region.
    Outage { region: String },
    /// Bring a region back (replication into it catches up).
    Restore { region: String },
}

pub async fn run(args: RegionArgs) -> anyhow::Result<()> {
    let located = args.target.locate()?;
    let endpoints = Endpoints::of(&located, Duration::from_secs(30)).await?;
    let (method, path) = match args.action.unwrap_or(RegionAction::Status) {
        RegionAction::Status => (Method::GET, "/admin/regions".to_string()),
        RegionAction::Outage { region } => (Method::PUT, format!("/admin/regions/{region}/outage")),
        RegionAction::Restore { region } => {
            (Method::DELETE, format!("/admin/regions/{region}/outage"))
        }
    };
    let url = format!("{}{path}", endpoints.arm);
    let answer = endpoints.admin_call(method, &url).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&answer)?);
        return Ok(());
    }
    print_status(&answer);
    Ok(())
}

fn print_status(answer: &Value) {
    let outages: Vec<&str> = answer["outages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    match outages.is_empty() {
        true => println!("outages: none"),
        false => println!("outages: {}", outages.join(", ")),
    }
    for vault in answer["vaults"].as_array().into_iter().flatten() {
        let replication = &vault["replication"];
        println!(
            "{:<30} {:<18} → {:<18} {:<16} pending {} objects, {} bytes, lag {} s",
            vault["name"].as_str().unwrap_or_default(),
            vault["region"].as_str().unwrap_or_default(),
            vault["secondaryRegion"].as_str().unwrap_or("-"),
            vault["redundancy"].as_str().unwrap_or_default(),
            replication["objects"],
            replication["bytes"],
            replication["lagSeconds"],
        );
    }
}
