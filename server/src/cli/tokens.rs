//! `eventbus tokens create | list | get | revoke`: the API tokens of TokenService (an admin token
//! of every namespace is needed, through `--token` or `EVENTBUS_TOKEN`).
//!
//! `create` grants each `--role` on the namespace or pattern of `--namespace` (`shop`,
//! `team-a.*`, `*`), and each `--grant ROLE:PATTERN` besides; it prints the secret alone on
//! stdout (so that `TOKEN=$(eventbus tokens create ...)` works) and what was created on stderr.
//! The secret is never shown again: `list` and `get` show everything else.

use std::time::{Duration, SystemTime};

use anyhow::bail;
use clap::Subcommand;
use eventbus_client::pb;
use serde_json::{Value, json};

use super::{ClientArgs, collect_pages, invalid, parse, print_json, print_table, render, rpc_error};

/// The token subcommands.
#[derive(Debug, Subcommand)]
pub enum TokensCommand {
    /// Creates a token and prints its secret, once.
    Create(CreateArgs),
    /// Lists every token (revoked and expired ones too), never their secrets.
    #[command(alias = "ls")]
    List,
    /// Shows one token.
    Get(IdArgs),
    /// Revokes a token: every server refuses it within its token cache time (5 s by default).
    Revoke(IdArgs),
}

/// Flags of `eventbus tokens create`.
#[derive(Debug, clap::Args)]
pub struct CreateArgs {
    /// A role granted on --namespace (a namespace, `prefix.*` or `*`): publisher, reader,
    /// listener, subscriber, operator or admin. Repeatable.
    #[arg(long = "role", value_parser = role)]
    pub roles: Vec<pb::Role>,
    /// A role on a namespace pattern, `ROLE:PATTERN` (`reader:team-a.*`). Repeatable.
    #[arg(long = "grant", value_parser = grant)]
    pub grants: Vec<pb::Grant>,
    /// A name for people and logs, e.g. `ci-shop`.
    #[arg(long, default_value = "")]
    pub name: String,
    /// The token stops working after this long (`30d`, `12h`) [default: never].
    #[arg(long, value_parser = parse::duration)]
    pub expires: Option<Duration>,
}

/// The id argument of `get` and `revoke`.
#[derive(Debug, clap::Args)]
pub struct IdArgs {
    /// The token's id (from `eventbus tokens list`).
    pub id: String,
}

fn role(s: &str) -> Result<pb::Role, String> {
    let role = pb::Role::from_str_name(&format!("ROLE_{}", s.to_ascii_uppercase()));
    role.filter(|r| *r != pb::Role::Unspecified)
        .ok_or_else(|| format!("unknown role {s:?}: one of publisher, reader, listener, subscriber, operator, admin"))
}

fn grant(s: &str) -> Result<pb::Grant, String> {
    let Some((r, namespaces)) = s.split_once(':') else {
        return Err(format!("{s:?} is not ROLE:PATTERN, e.g. reader:team-a.*"));
    };
    Ok(pb::Grant { role: role(r)? as i32, namespaces: namespaces.to_owned() })
}

pub async fn run(args: &ClientArgs, cmd: TokensCommand) -> anyhow::Result<()> {
    let client = args.connect().await?;
    let mut tokens = client.tokens();
    match cmd {
        TokensCommand::Create(create) => {
            let request = create_request(args, create)?;
            let created = tokens.create_token(request).await.map_err(|s| rpc_error(s.into()))?.into_inner();
            let token = created.token.unwrap_or_default();
            if args.json {
                let mut object = token_json(&token);
                object["secret"] = Value::String(created.secret);
                print_json(&object);
            } else {
                note!("created token {} ({}); its secret, shown only now:", token.id, grants_text(&token.grants));
                out!("{}", created.secret);
            }
        }
        TokensCommand::List => {
            let (all, _) = collect_pages(0, |page_size, page_token| {
                let mut tokens = tokens.clone();
                async move {
                    let request = pb::ListTokensRequest { page_size, page_token };
                    let page = tokens.list_tokens(request).await.map_err(|s| rpc_error(s.into()))?.into_inner();
                    Ok((page.tokens, page.next_page_token))
                }
            })
            .await?;
            print_tokens(args, &all);
        }
        TokensCommand::Get(IdArgs { id }) => {
            let got = tokens.get_token(pb::GetTokenRequest { id }).await.map_err(|s| rpc_error(s.into()))?;
            print_tokens(args, &[got.into_inner().token.unwrap_or_default()]);
        }
        TokensCommand::Revoke(IdArgs { id }) => {
            let revoked = tokens.revoke_token(pb::RevokeTokenRequest { id }).await.map_err(|s| rpc_error(s.into()))?;
            let token = revoked.into_inner().token.unwrap_or_default();
            if args.json {
                print_json(&token_json(&token));
            } else {
                out!("revoked token {}{}", token.id, named(&token.name));
            }
        }
    }
    Ok(())
}

/// Returns the CreateToken request of the flags: each `--role` on `--namespace`, then each
/// `--grant`.
fn create_request(args: &ClientArgs, create: CreateArgs) -> anyhow::Result<pb::CreateTokenRequest> {
    let on_namespace = create.roles.iter().map(|r| pb::Grant { role: *r as i32, namespaces: args.namespace.clone() });
    let grants: Vec<pb::Grant> = on_namespace.chain(create.grants).collect();
    if grants.is_empty() {
        bail!(invalid("--role", "give at least one --role (on --namespace) or --grant ROLE:PATTERN"));
    }
    let expire_time = match create.expires {
        Some(d) => {
            let at = SystemTime::now().checked_add(d).ok_or_else(|| invalid("--expires", "is too far away"))?;
            Some(prost_types::Timestamp::from(at))
        }
        None => None,
    };
    Ok(pb::CreateTokenRequest { name: create.name, grants, expire_time })
}

fn role_name(role: i32) -> String {
    let name = pb::Role::try_from(role).unwrap_or_default().as_str_name();
    name.trim_start_matches("ROLE_").to_ascii_lowercase()
}

/// Returns `publisher on shop, reader on team-a.*`.
fn grants_text(grants: &[pb::Grant]) -> String {
    grants.iter().map(|g| format!("{} on {}", role_name(g.role), g.namespaces)).collect::<Vec<_>>().join(", ")
}

fn named(name: &str) -> String {
    if name.is_empty() { String::new() } else { format!(" ({name})") }
}

/// Returns whether a token works now: `active`, `expired` or `revoked`.
fn state(token: &pb::Token) -> &'static str {
    let now = prost_types::Timestamp::from(SystemTime::now());
    let passed = |t: &prost_types::Timestamp| (t.seconds, t.nanos) <= (now.seconds, now.nanos);
    if token.revoke_time.is_some() {
        "revoked"
    } else if token.expire_time.as_ref().is_some_and(passed) {
        "expired"
    } else {
        "active"
    }
}

fn token_json(t: &pb::Token) -> Value {
    let time = |ts: &Option<prost_types::Timestamp>| ts.as_ref().map_or(Value::Null, |t| render::time(t).into());
    let grants: Vec<Value> =
        t.grants.iter().map(|g| json!({ "role": role_name(g.role), "namespaces": g.namespaces })).collect();
    json!({
        "id": t.id,
        "name": t.name,
        "grants": grants,
        "state": state(t),
        "create_time": time(&t.create_time),
        "expire_time": time(&t.expire_time),
        "last_use_time": time(&t.last_use_time),
        "revoke_time": time(&t.revoke_time),
    })
}

fn print_tokens(args: &ClientArgs, tokens: &[pb::Token]) {
    if args.json {
        tokens.iter().for_each(|t| print_json(&token_json(t)));
        return;
    }
    if tokens.is_empty() {
        note!("no tokens");
        return;
    }
    let time =
        |ts: &Option<prost_types::Timestamp>, none: &str| ts.as_ref().map_or_else(|| none.to_owned(), render::time);
    let rows: Vec<Vec<String>> = tokens
        .iter()
        .map(|t| {
            vec![
                t.id.clone(),
                if t.name.is_empty() { "-".to_owned() } else { t.name.clone() },
                grants_text(&t.grants),
                state(t).to_owned(),
                time(&t.create_time, "-"),
                time(&t.expire_time, "never"),
                time(&t.last_use_time, "never"),
            ]
        })
        .collect();
    print_table(&["ID", "NAME", "GRANTS", "STATE", "CREATED", "EXPIRES", "LAST USED"], &rows);
}
