//! `supportopsd secret keygen | seal | unseal`.

use std::io::{Read, Write};
use std::path::PathBuf;

use anyhow::{Context as _, bail};

use super::Exit;
use crate::manifest::IntegrationId;
use crate::secrets::{self, SealKey};

/// Secret commands.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Generate a sealing key (64 random bytes, base64) and print it, or write it to --out.
    Keygen {
        /// Write the key to this file (created with mode 0600; never overwritten).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Seal a value read from stdin for one integration field; prints `{ sealed = "sos1:…" }`.
    Seal {
        /// The integration id the value belongs to.
        #[arg(long)]
        integration: String,
        /// The credential field name (`api_key`, or `webhook_secret` for `[webhook] secret`).
        #[arg(long)]
        field: String,
        /// The sealing key file [default: $SUPPORTOPSD_KEY_FILE, then $CREDENTIALS_DIRECTORY/supportopsd.key].
        #[arg(long, env = "SUPPORTOPSD_KEY_FILE")]
        key_file: Option<PathBuf>,
    },
    /// Unseal a `sos1:` value read from stdin and print the plain text.
    Unseal {
        /// The integration id the value belongs to.
        #[arg(long)]
        integration: String,
        /// The credential field name.
        #[arg(long)]
        field: String,
        /// The sealing key file.
        #[arg(long, env = "SUPPORTOPSD_KEY_FILE")]
        key_file: Option<PathBuf>,
    },
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

fn read_stdin() -> anyhow::Result<Vec<u8>> {
    let mut buf = Vec::new();
    std::io::stdin()
        .read_to_end(&mut buf)
        .context("reading stdin")?;
    // A value typed or piped with `echo` ends with a newline that is not part of the secret.
    while buf.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
        buf.pop();
    }
    Ok(buf)
}

/// Runs a secret command.
pub fn run(cmd: &Command) -> anyhow::Result<Exit> {
    match cmd {
        Command::Keygen { out } => {
            let key = SealKey::generate()?;
            let text = key.to_base64();
            match out {
                None => println!("{}", &*text),
                Some(path) => {
                    let mut opts = std::fs::OpenOptions::new();
                    opts.write(true).create_new(true);
                    #[cfg(unix)]
                    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
                    let mut f = opts
                        .open(path)
                        .with_context(|| format!("creating {}", path.display()))?;
                    f.write_all(text.as_bytes())?;
                    f.write_all(b"\n")?;
                    eprintln!("wrote a new sealing key to {}", path.display());
                }
            }
            Ok(Exit::Ok)
        }
        Command::Seal {
            integration,
            field,
            key_file,
        } => {
            let id = IntegrationId::parse(integration)?;
            let (key, _) = SealKey::load(key_file.as_deref(), &env)?;
            let value = read_stdin()?;
            if value.is_empty() {
                bail!("nothing to seal: stdin was empty");
            }
            let sealed = secrets::seal(&key, &id, field, &value)?;
            println!("{{ sealed = \"{sealed}\" }}");
            Ok(Exit::Ok)
        }
        Command::Unseal {
            integration,
            field,
            key_file,
        } => {
            let id = IntegrationId::parse(integration)?;
            let (key, _) = SealKey::load(key_file.as_deref(), &env)?;
            let input = String::from_utf8(read_stdin()?).context("stdin is not UTF-8")?;
            let sealed = input
                .trim()
                .trim_start_matches("{ sealed = \"")
                .trim_end_matches("\" }");
            let secret = secrets::unseal(&key, &id, field, sealed)?;
            let mut out = std::io::stdout();
            out.write_all(secret.expose())?;
            out.write_all(b"\n")?;
            Ok(Exit::Ok)
        }
    }
}
