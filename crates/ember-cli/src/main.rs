//! `ember`: back up block volumes and restore them, from the command line.
//!
//! Exit status: 0 success; 1 error (one line on stderr); 2 bad usage;
//! 3 `repo verify` found damage.
#![forbid(unsafe_code)]

mod args;
mod commands;
mod output;
mod rbd;
mod service;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = args::Cli::parse();
    match commands::run(cli) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("ember: error: {}", output::error_line(&error));
            ExitCode::from(1)
        }
    }
}
