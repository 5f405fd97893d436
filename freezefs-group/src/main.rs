//! `freezefs-group`: consistency groups. Filesystems on many hosts frozen at
//! once, on etcd, and thawed everywhere when any node fails: AdvFS's cluster
//! promise. See freezefs-group(8).

mod agent;
mod cli;
mod ending;
mod error;
mod etcd;
mod events;
mod freeze;
mod group_watch;
mod keys;
mod lease;
mod local;
mod status;
mod thaw;

use std::process::ExitCode;

use cli::Command;

fn main() -> ExitCode {
    let args: Vec<_> = std::env::args_os().skip(1).collect();
    if cli::asks_for_help(&args) {
        println!("{}\nSee freezefs-group(8).", cli::USAGE);
        return ExitCode::SUCCESS;
    }
    let cli = match cli::parse(args, std::env::var(cli::ENDPOINTS_ENV).ok()) {
        Ok(cli) => cli,
        Err(e) => {
            eprintln!("freezefs-group: {e}\n{}", cli::USAGE);
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("freezefs-group: {e}");
            return ExitCode::from(1);
        }
    };
    ExitCode::from(runtime.block_on(run(cli)))
}

async fn run(cli: cli::Cli) -> u8 {
    let password = std::env::var(cli::PASSWORD_ENV).ok();
    let client = match etcd::connect(&cli.etcd, password).await {
        Ok(client) => client,
        Err(e) => {
            eprintln!("freezefs-group: {e}");
            return 1;
        }
    };
    match cli.command {
        Command::Agent {
            group,
            name,
            ttl_s,
            mounts,
        } => match agent::run(client, group, name.clone(), ttl_s, mounts).await {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("freezefs-group agent {name}: {e}");
                1
            }
        },
        Command::Freeze {
            group,
            timeout_s,
            ttl_s,
            members,
            cmd,
        } => {
            let request = freeze::FreezeRequest {
                group,
                timeout_s,
                ttl_s,
                members,
                cmd,
            };
            freeze::run(client, request).await
        }
        Command::Thaw { group } => thaw::run(client, group).await,
        Command::Status { group, json } => status::run(client, group, json).await,
    }
}
