use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    std::panic::set_hook(Box::new(|info| {
        let msg = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_default();
        eprintln!(
            "convscope: internal error: {}",
            msg.lines().next().unwrap_or("")
        );
    }));
    let args = convscope::cli::with_default_subcommand(std::env::args().collect());
    let cli = convscope::cli::Cli::parse_from(args);
    match convscope::cli::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let message = convscope::model::device::with_memory_hint(one_line(&e));
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line, without backtraces.
fn one_line(e: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in e.chain() {
        let line = cause
            .to_string()
            .lines()
            .next()
            .unwrap_or("")
            .trim()
            .to_string();
        if !line.is_empty() && !parts.iter().any(|p| p.contains(&line)) {
            parts.push(line);
        }
    }
    parts.join(": ")
}
