//! Logs and traces of the process: `RUST_LOG`-style filtering (`EVENTBUS_LOG` or `RUST_LOG`,
//! default `info`), text or JSON lines on stderr (coloured only on a terminal, and not when
//! `NO_COLOR` is set), and optionally OpenTelemetry traces exported over OTLP/gRPC through
//! `tracing-opentelemetry`. Postgres notices (`relation "_sqlx_migrations" already exists,
//! skipping`, which every replica gets at start) are kept below INFO unless the filter names
//! `sqlx` itself.
//!
//! Traces are on when an OTLP endpoint is configured (`--otlp-endpoint` or the standard
//! `OTEL_EXPORTER_OTLP_ENDPOINT` / `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) and
//! `OTEL_SDK_DISABLED` is not `true`. The other standard variables apply as the OpenTelemetry
//! SDK reads them: `OTEL_SERVICE_NAME` (default `eventbus`), `OTEL_RESOURCE_ATTRIBUTES`,
//! `OTEL_TRACES_SAMPLER[_ARG]`, `OTEL_BSP_*`, `OTEL_EXPORTER_OTLP_*`. When traces are off, no
//! span is created for tracing's sake: the RPC layer and the span observer are not installed.
//!
//! The spans, named after the OpenTelemetry messaging conventions ([`trace`]): one per RPC,
//! child of the caller's W3C context (the Publish call's is the `publish` span); a `trigger`
//! span per fired listener, child of the `publish` span whose event completed it and linked to
//! the other contributing events; a `deliver` span each time a notification goes out on a
//! stream, which is the context the runner continues.

use std::io::IsTerminal;
use std::time::Duration;

use anyhow::Context as _;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt;
use tracing_subscriber::prelude::*;

pub mod trace;

/// Log line format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// Settings of the telemetry set-up (from `eventbus serve`'s settings).
#[derive(Debug, Clone, Default)]
pub struct TelemetryArgs {
    /// OTLP/gRPC endpoint to export traces to; the standard OTEL_* variables configure the rest.
    pub otlp_endpoint: Option<String>,
}

impl TelemetryArgs {
    /// Whether traces are exported.
    pub fn traces_enabled(&self) -> bool {
        let disabled = std::env::var("OTEL_SDK_DISABLED").is_ok_and(|v| v.eq_ignore_ascii_case("true"));
        let endpoint = self.otlp_endpoint.as_deref().is_some_and(|e| !e.is_empty())
            || std::env::var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").is_ok_and(|e| !e.is_empty());
        endpoint && !disabled
    }
}

/// Flushes and stops the trace exporter when dropped.
#[derive(Debug)]
pub struct Guard {
    provider: Option<SdkTracerProvider>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take() {
            // The export runs on the runtime's threads; let them work while this one waits.
            let shutdown = || provider.shutdown_with_timeout(Duration::from_secs(5));
            let result = match tokio::runtime::Handle::try_current() {
                Ok(_) => tokio::task::block_in_place(shutdown),
                Err(_) => shutdown(),
            };
            if let Err(e) = result {
                eprintln!("flushing traces failed: {e}");
            }
        }
    }
}

/// Installs the global subscriber (and, when enabled, the trace exporter and the W3C
/// propagator). Call once, from `main`, inside the Tokio runtime.
pub fn init(format: LogFormat, args: &TelemetryArgs) -> anyhow::Result<Guard> {
    let filter = log_filter("info");
    let (otel, provider) = if args.traces_enabled() {
        let provider = tracer_provider(args)?;
        let layer = tracing_opentelemetry::layer().with_tracer(provider.tracer("eventbus"));
        opentelemetry::global::set_text_map_propagator(opentelemetry_sdk::propagation::TraceContextPropagator::new());
        opentelemetry::global::set_tracer_provider(provider.clone());
        (Some(layer), Some(provider))
    } else {
        (None, None)
    };
    let registry = tracing_subscriber::registry().with(filter).with(otel);
    let ansi = colour(std::io::stderr().is_terminal());
    match format {
        LogFormat::Text => registry.with(fmt::layer().with_ansi(ansi).with_writer(std::io::stderr)).init(),
        LogFormat::Json => registry.with(fmt::layer().json().with_ansi(false).with_writer(std::io::stderr)).init(),
    }
    Ok(Guard { provider })
}

/// Installs a subscriber for the client commands and `bench`: the filter of [`log_filter`] with
/// `default`, text or JSON lines on stderr, no traces.
pub fn init_plain(format: LogFormat, default: &str) {
    let logs = fmt().with_env_filter(log_filter(default)).with_writer(std::io::stderr);
    match format {
        LogFormat::Text => logs.with_ansi(colour(std::io::stderr().is_terminal())).init(),
        LogFormat::Json => logs.json().with_ansi(false).init(),
    }
}

/// Returns whether to colour what goes to a stream: only a terminal, and only when `NO_COLOR`
/// is unset or empty (<https://no-color.org>).
pub fn colour(stream_is_terminal: bool) -> bool {
    stream_is_terminal && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// The directive that keeps Postgres notices below INFO.
const QUIET_NOTICES: &str = "sqlx::postgres::notice=warn";

/// Returns the filter from `EVENTBUS_LOG`, else `RUST_LOG`, else `default` (an invalid one is
/// skipped).
pub fn log_filter(default: &str) -> EnvFilter {
    let from_env = |name: &str| std::env::var(name).ok().filter(|f| !f.trim().is_empty());
    [from_env("EVENTBUS_LOG"), from_env("RUST_LOG")]
        .into_iter()
        .flatten()
        .find_map(|spec| filter_of(&spec))
        .or_else(|| filter_of(default))
        .unwrap_or_else(|| EnvFilter::new("info"))
}

/// Returns the filter a spec describes, with [`QUIET_NOTICES`] unless it names `sqlx`.
fn filter_of(spec: &str) -> Option<EnvFilter> {
    let filter = EnvFilter::try_new(spec).ok()?;
    if spec.contains("sqlx") {
        return Some(filter);
    }
    Some(match QUIET_NOTICES.parse() {
        Ok(directive) => filter.add_directive(directive),
        Err(_) => filter,
    })
}

fn tracer_provider(args: &TelemetryArgs) -> anyhow::Result<SdkTracerProvider> {
    use opentelemetry_otlp::WithExportConfig;
    let mut exporter = opentelemetry_otlp::SpanExporter::builder().with_tonic();
    // The signal-specific variable wins over the general one (which the flag also reads); the
    // exporter reads it itself.
    let traces_endpoint = std::env::var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").is_ok_and(|e| !e.is_empty());
    if let Some(endpoint) = args.otlp_endpoint.as_deref().filter(|e| !e.is_empty() && !traces_endpoint) {
        exporter = exporter.with_endpoint(endpoint);
    }
    let exporter = exporter.build().context("building the OTLP span exporter")?;
    let mut resource = Resource::builder();
    let named = std::env::var("OTEL_SERVICE_NAME").is_ok_and(|n| !n.is_empty())
        || std::env::var("OTEL_RESOURCE_ATTRIBUTES").is_ok_and(|a| a.contains("service.name="));
    if !named {
        resource = resource.with_service_name("eventbus");
    }
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_id_generator(trace::SpanIds::default())
        .with_resource(resource.build())
        .build())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_keep_postgres_notices_below_info_unless_they_name_sqlx() {
        let cases = [
            ("info", "sqlx::postgres::notice=warn,info"),
            ("debug,eventbus_engine=trace", "sqlx::postgres::notice=warn,eventbus_engine=trace,debug"),
            ("info,sqlx=debug", "sqlx=debug,info"),
        ];
        for (spec, shown) in cases {
            assert_eq!(filter_of(spec).map(|f| f.to_string()).as_deref(), Some(shown), "{spec}");
        }
        assert!(filter_of("info,[").is_none(), "an invalid spec is skipped");
    }
}
