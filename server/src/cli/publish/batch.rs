//! `eventbus publish --file`: the events of an NDJSON file (or stdin), one CloudEvent in the
//! JSON format per line, published in batches of up to 1000 events and 3 MiB.
//!
//! Each batch is all-or-nothing; the run is not. A bad line, or a batch the server rejects,
//! stops the run: the error names the line, and the batches before it stay published. Running
//! the same file again is safe, because events keep their ids: what was published comes back
//! as duplicates.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::time::Instant;

use anyhow::Context;
use eventbus_client::{Client, pb};
use prost::Message;
use serde_json::json;

use super::cloudevent;
use crate::cli::output::Progress;
use crate::cli::{ClientArgs, CommandError, invalid, print_json, rpc_error};

/// Most events per Publish (the contract's limit).
const MAX_BATCH_EVENTS: usize = 1000;
/// Most encoded event bytes per Publish: under the server's default 4 MiB message limit, with
/// room for the request around them.
const MAX_BATCH_BYTES: usize = 3 << 20;
/// Files larger than this get a progress line (on a terminal).
const LARGE_FILE_BYTES: u64 = 1 << 20;

/// Events read but not yet sent, with their line numbers.
#[derive(Debug, Default)]
struct Batch {
    events: Vec<pb::CloudEvent>,
    lines: Vec<usize>,
    bytes: usize,
}

/// What was published so far.
#[derive(Debug, Default)]
struct Summary {
    new: u64,
    duplicates: u64,
    batches: u64,
    first_sequence: Option<u64>,
    last_sequence: Option<u64>,
}

pub async fn run(args: &ClientArgs, path: &Path) -> anyhow::Result<()> {
    let started = Instant::now();
    let (reader, size, name) = open(path)?;
    let client = args.connect().await?;
    let mut progress = Progress::new(size.is_some_and(|s| s > LARGE_FILE_BYTES));
    let (mut batch, mut summary, mut read) = (Batch::default(), Summary::default(), 0u64);
    for (i, line) in reader.lines().enumerate() {
        let line = line.with_context(|| format!("reading {name}"))?;
        read += line.len() as u64 + 1;
        if line.trim().is_empty() {
            continue;
        }
        let event = parse_line(i + 1, &line)?;
        let bytes = event.encoded_len();
        if batch.events.len() == MAX_BATCH_EVENTS || (!batch.events.is_empty() && batch.bytes + bytes > MAX_BATCH_BYTES)
        {
            send(&client, &args.namespace, std::mem::take(&mut batch), &mut summary).await?;
        }
        batch.events.push(event);
        batch.lines.push(i + 1);
        batch.bytes += bytes;
        let percent = size.map(|s| format!(" ({}%)", read * 100 / s.max(1))).unwrap_or_default();
        progress.update(format_args!("published {} events{percent}", summary.new + summary.duplicates));
    }
    if !batch.events.is_empty() {
        send(&client, &args.namespace, batch, &mut summary).await?;
    }
    progress.finish();
    print_summary(args, &name, &summary, started);
    Ok(())
}

/// Opens the file, or stdin for `-`; returns a reader, the size when known, and a name.
fn open(path: &Path) -> anyhow::Result<(Box<dyn BufRead>, Option<u64>, String)> {
    if path.as_os_str() == "-" {
        return Ok((Box::new(BufReader::new(std::io::stdin())), None, "stdin".to_owned()));
    }
    let name = path.display().to_string();
    let file = std::fs::File::open(path).with_context(|| format!("opening {name}"))?;
    let size = file.metadata().ok().map(|m| m.len());
    Ok((Box::new(BufReader::new(file)), size, name))
}

/// Returns the event on line `n`, or an INVALID_ARGUMENT naming the line and the attribute.
fn parse_line(n: usize, line: &str) -> anyhow::Result<pb::CloudEvent> {
    let value = serde_json::from_str(line).map_err(|e| invalid(format!("line {n}"), format!("not JSON: {e}")))?;
    cloudevent::from_json(value).map_err(|(field, description)| {
        let field = if field.is_empty() { format!("line {n}") } else { format!("line {n}: {field}") };
        invalid(field, description)
    })
}

async fn send(client: &Client, namespace: &str, batch: Batch, summary: &mut Summary) -> anyhow::Result<()> {
    let Batch { events, lines, .. } = batch;
    let results = client.publish(namespace, events).await.map_err(|e| batch_error(rpc_error(e), &lines, summary))?;
    for r in &results {
        if r.duplicate {
            summary.duplicates += 1;
        } else {
            summary.new += 1;
            summary.first_sequence.get_or_insert(r.sequence);
            summary.last_sequence = Some(r.sequence);
        }
    }
    summary.batches += 1;
    Ok(())
}

/// Says which lines a rejected batch held and what was published before it, and turns the
/// server's `events[i]` field paths into line numbers.
fn batch_error(mut error: anyhow::Error, lines: &[usize], summary: &Summary) -> anyhow::Error {
    let (first, last) = (lines.first().copied().unwrap_or(0), lines.last().copied().unwrap_or(0));
    let before = summary.new + summary.duplicates;
    if let Some(e) = error.downcast_mut::<CommandError>() {
        for (field, _) in &mut e.field_violations {
            if let Some(line) = event_index(field).and_then(|i| lines.get(i)) {
                *field = format!("line {line}: {field}");
            }
        }
        e.message = format!(
            "publishing lines {first} to {last} failed, and {before} events before them were published: {}",
            e.message
        );
    }
    error
}

/// Returns `i` of a field path `events[i]...`.
fn event_index(field: &str) -> Option<usize> {
    field.strip_prefix("events[")?.split(']').next()?.parse().ok()
}

fn print_summary(args: &ClientArgs, name: &str, s: &Summary, started: Instant) {
    let events = s.new + s.duplicates;
    if args.json {
        print_json(&json!({
            "namespace": args.namespace,
            "events": events,
            "new": s.new,
            "duplicates": s.duplicates,
            "batches": s.batches,
            "first_sequence": s.first_sequence,
            "last_sequence": s.last_sequence,
        }));
        return;
    }
    let range = match (s.first_sequence, s.last_sequence) {
        (Some(a), Some(b)) => format!(", sequences {a} to {b}"),
        _ => String::new(),
    };
    out!(
        "published {events} events from {name} in {} batches: {} new, {} duplicates{range} ({:.1}s)",
        s.batches,
        s.new,
        s.duplicates,
        started.elapsed().as_secs_f64()
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_name_their_number_and_attribute() {
        let cases = [
            (3, "{", "line 3"),
            (4, "[]", "line 4"),
            (5, r#"{"specversion":"1.0","source":"/s","type":"t"}"#, "line 5: id"),
        ];
        for (n, line, field) in cases {
            let error = parse_line(n, line).unwrap_err();
            let e = error.downcast_ref::<CommandError>().unwrap();
            assert_eq!(e.code, tonic::Code::InvalidArgument);
            assert_eq!(e.field_violations[0].0, field, "{line}");
        }
    }

    #[test]
    fn rejected_batches_name_lines() {
        let status = CommandError {
            code: tonic::Code::InvalidArgument,
            message: "invalid publish".into(),
            field_violations: vec![("events[1].source".into(), "must not be empty".into())],
        };
        let summary = Summary { new: 990, duplicates: 10, batches: 1, ..Default::default() };
        let error = batch_error(status.into(), &[1001, 1003, 1004], &summary);
        let e = error.downcast_ref::<CommandError>().unwrap();
        assert_eq!(e.field_violations, [("line 1003: events[1].source".to_owned(), "must not be empty".to_owned())]);
        assert_eq!(
            e.message,
            "publishing lines 1001 to 1004 failed, and 1000 events before them were published: invalid publish"
        );
    }
}
