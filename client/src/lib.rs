//! Rust client for eventbus, the gRPC event bus for workflow engines (`eventbus.v1`).
//!
//! The crate holds the generated protobuf messages and gRPC stubs ([`pb`]) and a thin layer over
//! them: [`Client`] for the calls, [`CloudEventBuilder`] and [`ListenerSpecBuilder`] for the two
//! messages clients write most, and [`Subscription`], a stream of notifications that reconnects
//! and resumes on its own. The [`trace`] module carries W3C Trace Context in call metadata.
//!
//! It depends only on the wire stack (tonic, prost, tokio, futures) and must not depend on the
//! engine, the server or OpenTelemetry: callers that trace hand it `traceparent` strings. With
//! the `server` feature it also compiles the generated server side (`pb::event_bus_service_server`)
//! for the server crate, which serves [`FILE_DESCRIPTOR_SET`] over gRPC reflection.
//!
//! ```no_run
//! use eventbus_client::{Client, CloudEventBuilder, ListenerSpecBuilder, SubscribeOptions};
//! use futures::StreamExt;
//!
//! # async fn run() -> Result<(), eventbus_client::Error> {
//! let client = Client::connect("http://127.0.0.1:50051").await?;
//! client
//!     .register_listener("shop", ListenerSpecBuilder::start("invoice-flow").one("com.example.invoice.created"))
//!     .await?;
//! let event = CloudEventBuilder::new("/billing", "com.example.invoice.created").subject("inv-1").build();
//! client.publish("shop", [event]).await?;
//!
//! let mut notifications = client.subscribe(SubscribeOptions::new("shop", "runners")).await?;
//! while let Some(delivery) = notifications.next().await {
//!     let delivery = delivery?;
//!     // Start the workflow, idempotently on `fire_id`, then settle the notification.
//!     delivery.ack().await?;
//! }
//! # Ok(())
//! # }
//! ```

#![warn(missing_docs)]

mod client;
mod error;
mod event;
mod listener;
mod proto_time;
mod publisher;
mod subscription;
pub mod trace;

pub use client::{BearerToken, Client, ListenerQuery, RawClient, Registration, TokensClient};
pub use error::Error;
pub use event::{AttributeValue, CloudEventBuilder, SPEC_VERSION};
pub use listener::ListenerSpecBuilder;
pub use publisher::Publisher;
pub use subscription::{Backoff, Delivery, StartPosition, SubscribeOptions, Subscription};
/// The TLS settings of [`Client::connect_tls`]: CA certificates to trust and, for mutual TLS,
/// the client's certificate and key (all PEM).
pub use tonic::transport::{Certificate, ClientTlsConfig, Identity};

/// The encoded `google.protobuf.FileDescriptorSet` of `eventbus.v1` and the well-known types it
/// imports, with source info (comments), for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("eventbus_descriptor");

/// Generated messages and gRPC stubs of the `eventbus.v1` protobuf package.
///
/// Well-known types (`Timestamp`, `Duration`, `Any`) are those of [`prost_types`]. The client is
/// [`event_bus_service_client::EventBusServiceClient`]; the server trait and
/// `event_bus_service_server::EventBusServiceServer` exist only with the `server` feature.
#[allow(
    missing_docs,
    clippy::all,
    clippy::pedantic,
    rustdoc::bare_urls,
    rustdoc::broken_intra_doc_links,
    rustdoc::invalid_html_tags
)]
pub mod pb {
    tonic::include_proto!("eventbus.v1");

    /// The same bytes as [`crate::FILE_DESCRIPTOR_SET`].
    pub const FILE_DESCRIPTOR_SET: &[u8] = crate::FILE_DESCRIPTOR_SET;
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;

    #[test]
    fn descriptor_set_names_files_by_import_path_and_includes_imports() {
        let set = prost_types::FileDescriptorSet::decode(FILE_DESCRIPTOR_SET).unwrap();
        let mut names: Vec<&str> = set.file.iter().map(|file| file.name()).collect();
        names.sort_unstable();
        assert_eq!(
            names,
            [
                "eventbus/v1/admin.proto",
                "eventbus/v1/cloudevent.proto",
                "eventbus/v1/event_bus_service.proto",
                "eventbus/v1/listener.proto",
                "eventbus/v1/notification.proto",
                "eventbus/v1/token_service.proto",
                "google/protobuf/any.proto",
                "google/protobuf/duration.proto",
                "google/protobuf/field_mask.proto",
                "google/protobuf/timestamp.proto",
            ]
        );
        let service = set.file.iter().flat_map(|file| &file.service).find(|s| s.name() == "EventBusService").unwrap();
        let methods: Vec<&str> = service.method.iter().map(|m| m.name()).collect();
        assert!(methods.contains(&"Publish") && methods.contains(&"Subscribe"), "{methods:?}");
        let with_comments = set.file.iter().find(|f| f.name() == "eventbus/v1/event_bus_service.proto").unwrap();
        assert!(with_comments.source_code_info.is_some());
    }
}
