//! `mdm-sync`: the operator CLI. What an on-call engineer needs when an alarm fires (dead letters listed, shown
//! and redriven; on-failure records resolved to their records; replays) and what a developer needs before deploying
//! a mapping (offline transforms, mapping checks, webhook signing, the Reltio side of the integration). Works the
//! same against AWS and the local stack (`AWS_ENDPOINT_URL`). Exit codes: 0 done, 1 findings or partial failure,
//! 2 usage or configuration error.

mod dlq;
mod error;
mod kinesis_io;
mod letters;
mod output;
mod redrive;
mod reltio;
mod replay;
mod signing;
mod sqs_io;
mod stack;
mod store_io;
mod stream_order;
mod transform;

use clap::{Args, Parser, Subcommand};
use error::CliError;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "mdm-sync",
    version,
    about = "Operate mdm-sync: dead letters, replays, mappings, signing, Reltio"
)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

/// Settings every command may use.
#[derive(Args, Clone)]
pub struct Global {
    /// The CloudFormation stack whose outputs name the queues, the stream and the tables.
    #[arg(long, global = true, env = "MDM_SYNC_STACK")]
    stack: Option<String>,
    /// Overrides or adds a stack output, e.g. `--set CdcDeadLetterQueueUrl=https://sqs...` (repeatable).
    #[arg(long = "set", value_name = "OUTPUT=VALUE", global = true)]
    set: Vec<String>,
    /// Machine-readable output (JSON) instead of tables.
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Dead-letter queues: list, show, redrive.
    Dlq {
        #[command(subcommand)]
        command: DlqCommand,
    },
    /// Puts DMS records (NDJSON, one record per line, or a saved Kinesis event) on the CDC stream.
    Replay(replay::ReplayArgs),
    /// The CDC mapping offline: DMS records in, the Reltio requests cdc-ingest would send out. No network.
    Transform(transform::TransformArgs),
    /// Mapping files.
    Mapping {
        #[command(subcommand)]
        command: MappingCommand,
    },
    /// Signs a webhook body under either scheme (prints the headers).
    Sign(signing::SignArgs),
    /// Verifies a signed webhook body, as the receiver does (exit 1 when it does not pass).
    Verify(signing::VerifyArgs),
    /// The Reltio side of the integration.
    Reltio {
        #[command(subcommand)]
        command: reltio::ReltioCommand,
    },
}

#[derive(Subcommand)]
enum DlqCommand {
    /// Every dead-letter and failure queue of the stack: depth, the oldest message's age, reasons counted.
    List(dlq::ListArgs),
    /// One message in full: the first one, or `--message-id`.
    Show(dlq::ShowArgs),
    /// Puts dead letters back where they came from, each deleted only once its re-put succeeded.
    Redrive(redrive::RedriveArgs),
}

#[derive(Subcommand)]
enum MappingCommand {
    /// Validates mapping files and shows what sample records and events would produce (exit 1 on an invalid file).
    Check(transform::CheckArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

async fn run(cli: Cli) -> Result<ExitCode, CliError> {
    let g = cli.global;
    match cli.command {
        Command::Dlq { command } => match command {
            DlqCommand::List(args) => dlq::list(&g, args).await,
            DlqCommand::Show(args) => dlq::show(&g, args).await,
            DlqCommand::Redrive(args) => redrive::run(&g, args).await,
        },
        Command::Replay(args) => replay::run(&g, args).await,
        Command::Transform(args) => transform::transform(&g, args).await,
        Command::Mapping {
            command: MappingCommand::Check(args),
        } => transform::check(&g, args).await,
        Command::Sign(args) => signing::sign(&g, args),
        Command::Verify(args) => signing::verify(&g, args),
        Command::Reltio { command } => reltio::run(&g, command).await,
    }
}

/// Reads a file, or standard input for `-`.
pub fn read_input(path: &PathBuf) -> Result<Vec<u8>, CliError> {
    use std::io::Read;
    if path.as_os_str() == "-" {
        let mut buf = Vec::new();
        std::io::stdin()
            .read_to_end(&mut buf)
            .map_err(|e| CliError::Usage(format!("cannot read standard input: {e}")))?;
        return Ok(buf);
    }
    std::fs::read(path).map_err(|e| CliError::Usage(format!("cannot read {}: {e}", path.display())))
}
