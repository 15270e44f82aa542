//! `topic-relay sign`: the signature Momento would send for a body.

use std::io::Read;
use std::process::ExitCode;

use anyhow::Context;

use crate::cli::SignArgs;
use crate::verify;

/// Prints the `momento-signature` of the file's (or stdin's) exact bytes.
pub fn run(args: SignArgs) -> anyhow::Result<ExitCode> {
    let body = match args.file.as_deref() {
        Some(path) if path.as_os_str() != "-" => {
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?
        }
        _ => {
            let mut body = Vec::new();
            std::io::stdin().read_to_end(&mut body).context("cannot read stdin")?;
            body
        }
    };
    say!("{}", verify::sign(args.secret.as_bytes(), &body))?;
    Ok(ExitCode::SUCCESS)
}
