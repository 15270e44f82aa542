//! `topic-relay jwt`: mint an HS256 JWT like the ones an application gives its signed-in
//! users, to try `[tokens]` without an identity provider.

use std::process::ExitCode;

use anyhow::{Context, bail};
use jsonwebtoken::{EncodingKey, Header};
use serde_json::{Map, Value};

use crate::cli::JwtArgs;

/// Prints the JWT.
pub fn run(args: JwtArgs) -> anyhow::Result<ExitCode> {
    let secret = match args.secret {
        Some(secret) => secret,
        None => match std::env::var("APP_JWT_SECRET") {
            Ok(secret) => {
                eprintln!(
                    "topic-relay: APP_JWT_SECRET is read for TOPIC_RELAY_JWT_SECRET: rename it; \
                     the old name is read until the next release"
                );
                secret
            }
            Err(_) => bail!("give the HS256 secret with --secret or TOPIC_RELAY_JWT_SECRET"),
        },
    };
    let lifetime =
        humantime::parse_duration(&args.expires_in).context("--expires-in takes a duration such as 1h")?;
    let now = jsonwebtoken::get_current_timestamp();
    let mut claims = Map::new();
    for pair in &args.claims {
        let Some((name, value)) = pair.split_once('=') else {
            bail!("--claim takes NAME=VALUE, not {pair:?}")
        };
        claims.insert(name.to_owned(), Value::String(value.to_owned()));
    }
    claims.insert("sub".into(), args.sub.into());
    claims.insert("iat".into(), now.into());
    claims.insert("exp".into(), (now + lifetime.as_secs()).into());
    if let Some(issuer) = args.issuer {
        claims.insert("iss".into(), issuer.into());
    }
    if let Some(audience) = args.audience {
        claims.insert("aud".into(), audience.into());
    }
    let jwt =
        jsonwebtoken::encode(&Header::default(), &claims, &EncodingKey::from_secret(secret.as_bytes()))?;
    say!("{jwt}")?;
    Ok(ExitCode::SUCCESS)
}
