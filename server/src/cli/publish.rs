//! `eventbus publish`: one event from flags, or a batch from NDJSON ([`batch`]).

use std::path::PathBuf;
use std::time::SystemTime;

use anyhow::Context;
use eventbus_client::CloudEventBuilder;
use serde_json::json;

use super::parse::{self, Extension};
use super::{ClientArgs, print_json, rpc_error};

mod batch;
mod cloudevent;

/// Flags of `eventbus publish`.
#[derive(Debug, clap::Args)]
pub struct PublishArgs {
    /// Event type, e.g. com.example.invoice.created.
    #[arg(long = "type", short = 't', value_name = "TYPE", required_unless_present = "file")]
    pub event_type: Option<String>,
    /// Event source, a URI reference, e.g. /billing.
    #[arg(long, short = 's', required_unless_present = "file")]
    pub source: Option<String>,
    /// Event id [default: a new UUIDv7, minted here, so a retry with the same id is a duplicate].
    #[arg(long)]
    pub id: Option<String>,
    /// The `subject` attribute.
    #[arg(long)]
    pub subject: Option<String>,
    /// The `time` attribute: RFC 3339, or `now`.
    #[arg(long)]
    pub time: Option<String>,
    /// Payload: JSON (sent as application/json) or any other text (text/plain).
    #[arg(long, short = 'd', conflicts_with = "data_file")]
    pub data: Option<String>,
    /// Payload from a file (`-` for stdin): JSON, other UTF-8 text, or binary
    /// (application/octet-stream).
    #[arg(long)]
    pub data_file: Option<PathBuf>,
    /// Overrides the payload's `datacontenttype`.
    #[arg(long)]
    pub content_type: Option<String>,
    /// Extension attribute NAME=VALUE (a string) or NAME:KIND=VALUE with KIND one of string, int,
    /// bool, uri, uriref, time, bytes (base64); repeatable.
    #[arg(long = "ext", short = 'e', value_name = "NAME=VALUE", value_parser = parse::extension)]
    pub extensions: Vec<Extension>,
    /// Publishes the events of this NDJSON file instead (`-` for stdin): one event per line in
    /// the CloudEvents JSON format, sent in batches of up to 1000 (each all-or-nothing); prints
    /// a summary line.
    #[arg(long, value_name = "FILE", conflicts_with_all = [
        "event_type", "source", "id", "subject", "time", "data", "data_file", "content_type", "extensions",
    ])]
    pub file: Option<PathBuf>,
}

/// A payload and the media type it was detected as.
#[derive(Debug, PartialEq, Eq)]
enum Payload {
    Text { content_type: &'static str, text: String },
    Binary(Vec<u8>),
}

/// Detects a payload's media type: JSON, other UTF-8 text, or binary.
fn detect(bytes: Vec<u8>) -> Payload {
    match String::from_utf8(bytes) {
        Ok(text) if serde_json::from_str::<serde_json::Value>(&text).is_ok() => {
            Payload::Text { content_type: "application/json", text }
        }
        Ok(text) => Payload::Text { content_type: "text/plain", text },
        Err(e) => Payload::Binary(e.into_bytes()),
    }
}

fn read_payload(args: &PublishArgs) -> anyhow::Result<Option<Payload>> {
    if let Some(text) = &args.data {
        return Ok(Some(detect(text.clone().into_bytes())));
    }
    let Some(path) = &args.data_file else { return Ok(None) };
    let bytes = if path.as_os_str() == "-" {
        let mut buf = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf).context("reading the payload from stdin")?;
        buf
    } else {
        std::fs::read(path).with_context(|| format!("reading {}", path.display()))?
    };
    Ok(Some(detect(bytes)))
}

pub async fn run(args: &ClientArgs, cmd: PublishArgs) -> anyhow::Result<()> {
    if let Some(path) = &cmd.file {
        return batch::run(args, path).await;
    }
    let (Some(source), Some(event_type)) = (cmd.source.clone(), cmd.event_type.clone()) else {
        anyhow::bail!("--type and --source are required (or --file)");
    };
    let id = cmd.id.clone().unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
    let mut builder = CloudEventBuilder::new(source.clone(), event_type).id(id.clone());
    if let Some(subject) = &cmd.subject {
        builder = builder.subject(subject.clone());
    }
    if let Some(time) = &cmd.time {
        let at = if time == "now" { SystemTime::now() } else { parse::rfc3339(time).map_err(anyhow::Error::msg)? };
        builder = builder.time(at);
    }
    match read_payload(&cmd)? {
        Some(Payload::Text { content_type, text }) => {
            builder = builder.data_text(cmd.content_type.clone().unwrap_or_else(|| content_type.to_owned()), text);
        }
        Some(Payload::Binary(bytes)) => {
            let content_type = cmd.content_type.clone().unwrap_or_else(|| "application/octet-stream".to_owned());
            builder = builder.data_binary(content_type, bytes);
        }
        None => {}
    }
    for ext in cmd.extensions {
        builder = builder.extension(ext.name, ext.value);
    }
    let client = args.connect().await?;
    let results = client.publish(args.namespace.clone(), [builder.build()]).await.map_err(rpc_error)?;
    let result = results.first().context("the server returned no publish result")?;
    if args.json {
        print_json(&json!({
            "namespace": args.namespace,
            "source": source,
            "id": id,
            "sequence": result.sequence,
            "duplicate": result.duplicate,
        }));
    } else if result.duplicate {
        out!("duplicate of sequence {} (source {source}, id {id})", result.sequence);
    } else {
        out!("published sequence {} (source {source}, id {id})", result.sequence);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_detection() {
        assert_eq!(
            detect(br#"{"a": 1}"#.to_vec()),
            Payload::Text { content_type: "application/json", text: r#"{"a": 1}"#.into() }
        );
        assert_eq!(detect(b"42".to_vec()), Payload::Text { content_type: "application/json", text: "42".into() });
        assert_eq!(detect(b"hello".to_vec()), Payload::Text { content_type: "text/plain", text: "hello".into() });
        assert_eq!(detect(vec![0xff, 0x00]), Payload::Binary(vec![0xff, 0x00]));
    }
}
