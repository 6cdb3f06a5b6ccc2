//! The flags of `strongroom run` (DESIGN §11). The API token is deliberately not a flag:
//! a flag's value is in the process's argv, which every local user can read
//! (`/proc/<pid>/cmdline`, `ps`), so it comes from `STRONGROOM_TOKEN` only.
use std::{ffi::OsString, path::PathBuf};

use clap::Args;
use reqwest::Url;

/// Where `strongroom run` reads its API token.
pub const TOKEN_VAR: &str = "STRONGROOM_TOKEN";

#[derive(Clone, Debug, Args)]
#[command(
    after_help = "Credentials: an API token in STRONGROOM_TOKEN (never a flag: argv is \
    readable by every local user), or a workload's JWT (--oidc-token-file, --oidc-token-env) \
    exchanged at the server's /oauth/token.\n\nExit status: the command's own; 128+N when a \
    signal N ended it; 125 when strongroom run itself failed (nothing was started, or a \
    restart could not be made); 126 when the command could not be executed; 127 when it \
    was not found; 2 for a command-line mistake."
)]
pub struct RunArgs {
    /// The strongroom server's base URL, `https://…` (or `http://…` on a trusted network).
    #[arg(long, env = "STRONGROOM_SERVER", value_parser = parse_server)]
    pub server: Url,
    /// The resource whose deployed (pinned) values the command gets: its id, as
    /// `resources { nodes { id } }` lists it.
    #[arg(long, value_parser = clap::builder::NonEmptyStringValueParser::new())]
    pub resource: String,
    /// Put the value of reference field FIELD in variable NAME instead of the derived
    /// name (FIELD upper-cased, other characters than A-Z, 0-9 and _ as _). Repeatable.
    #[arg(long = "env", value_name = "NAME=FIELD", value_parser = EnvMapping::parse)]
    pub env: Vec<EnvMapping>,
    /// Keep watching the resource: when a new deployment of it becomes current, restart
    /// the command with the new values.
    #[arg(long)]
    pub watch: bool,
    /// With --watch: seconds a stopping command gets between SIGTERM and SIGKILL.
    #[arg(long, value_name = "SECS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(0..=3_600))]
    pub grace: u64,
    /// With --watch: seconds to wait for more changes before fetching, so a burst of
    /// deploys restarts the command once.
    #[arg(long, value_name = "SECS", default_value_t = 2, value_parser = clap::value_parser!(u64).range(0..=3_600))]
    pub debounce: u64,
    /// A file holding a workload's JWT (say a projected service account token), read
    /// again at every exchange, so a rotating token keeps a long run going.
    #[arg(long, value_name = "PATH", conflicts_with = "oidc_token_env")]
    pub oidc_token_file: Option<PathBuf>,
    /// An environment variable holding a workload's JWT; it is not passed to the command.
    #[arg(long, value_name = "VAR")]
    pub oidc_token_env: Option<String>,
    /// The command and its arguments, after `--`.
    #[arg(last = true, required = true, value_name = "CMD")]
    pub command: Vec<OsString>,
}

/// `--env NAME=FIELD`: the variable a reference's field is put in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnvMapping {
    pub name: String,
    pub field: String,
}

impl EnvMapping {
    fn parse(text: &str) -> Result<Self, String> {
        let Some((name, field)) = text.split_once('=') else {
            return Err(format!(
                "{text:?}: write NAME=FIELD, say DB_PASSWORD=db.password"
            ));
        };
        if !is_variable_name(name) {
            return Err(format!(
                "{name:?} is not an environment variable name: letters, digits and _, not \
                 starting with a digit"
            ));
        }
        if field.is_empty() {
            return Err(format!("{text:?}: the FIELD after `=` is missing"));
        }
        Ok(Self {
            name: name.to_owned(),
            field: field.to_owned(),
        })
    }
}

/// A name a POSIX shell can use: `[A-Za-z_][A-Za-z0-9_]*`.
pub fn is_variable_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn parse_server(text: &str) -> Result<Url, String> {
    let url = Url::parse(text).map_err(|e| format!("{text:?} is not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") || url.cannot_be_a_base() {
        return Err(format!(
            "{text:?}: give the server's http:// or https:// URL"
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!(
            "{text:?}: give the server's base URL, without ? or #"
        ));
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_mappings_name_a_variable_and_a_field() {
        assert_eq!(
            EnvMapping::parse("DB_PASSWORD=db.password"),
            Ok(EnvMapping {
                name: "DB_PASSWORD".into(),
                field: "db.password".into()
            })
        );
        assert_eq!(
            EnvMapping::parse("_X=a=b").map(|m| m.field),
            Ok("a=b".to_owned())
        );
        for bad in [
            "NOEQUALS", "=field", "1ABC=f", "A-B=f", "A B=f", "NAME=", "É=f",
        ] {
            assert!(EnvMapping::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn the_server_is_an_http_base_url() {
        for good in [
            "http://127.0.0.1:8080",
            "https://vault.example.com/strongroom/",
        ] {
            assert!(parse_server(good).is_ok(), "{good:?}");
        }
        for bad in [
            "vault.example.com",
            "ftp://x",
            "https://x/?a=1",
            "mailto:a@b",
        ] {
            assert!(parse_server(bad).is_err(), "{bad:?} was accepted");
        }
    }
}
