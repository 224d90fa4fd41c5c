//! The client: a tonic channel plus the trace context source.

use std::time::Duration;

use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};

use crate::{
    Error, Publisher, Subscription,
    pb::{self, event_bus_service_client::EventBusServiceClient, token_service_client::TokenServiceClient},
    proto_time,
    subscription::SubscribeOptions,
    trace::{TraceContext, TraceSource},
};

/// How long [`Client::connect`] waits for the TCP connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Interval of TCP keepalive probes on the connection.
const TCP_KEEPALIVE: Duration = Duration::from_secs(30);
/// Interval of HTTP/2 PINGs while calls (such as a Subscribe stream) are open.
const HTTP2_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);
/// How long an HTTP/2 PING may go unanswered before the connection counts as dead.
const HTTP2_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest response message the client accepts; a full ListEvents page can exceed tonic's
/// default of 4 MiB.
const MAX_DECODING_MESSAGE_SIZE: usize = 64 * 1024 * 1024;

/// A client of EventBusService.
///
/// Cloning is cheap and clones share the connection. Each call sends the current trace context
/// (see [`trace`](crate::trace)): by default the one set with [`trace::scope`](crate::trace::scope),
/// or what the function given to [`with_trace_source`](Self::with_trace_source) returns.
///
/// No call is retried here except the Subscribe stream (see [`Subscription`]). Publish is
/// idempotent per event id, so retrying it with the same built events is safe; so is
/// registering with a request id ([`register_listener_with_request_id`](Self::register_listener_with_request_id)).
#[derive(Debug, Clone)]
pub struct Client {
    channel: Channel,
    raw: RawClient,
    token: BearerToken,
    trace: TraceSource,
}

/// The generated client that [`Client::raw`] returns: its calls carry the client's token.
pub type RawClient = EventBusServiceClient<InterceptedService<Channel, BearerToken>>;

/// The generated TokenService client that [`Client::tokens`] returns: its calls carry the
/// client's token.
pub type TokensClient = TokenServiceClient<InterceptedService<Channel, BearerToken>>;

/// The token every call of a [`Client`] carries as `authorization: Bearer <token>`, if any.
#[derive(Debug, Clone, Default)]
pub struct BearerToken {
    authorization: Option<MetadataValue<Ascii>>,
}

impl Interceptor for BearerToken {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.authorization {
            request.metadata_mut().insert("authorization", value.clone());
        }
        Ok(request)
    }
}

/// The result of registering a listener.
#[derive(Debug, Clone, PartialEq)]
pub struct Registration {
    /// The registered listener, with its server-assigned id.
    pub listener: pb::Listener,
    /// True if this call registered it; false if its request id matched an earlier registration,
    /// which is returned unchanged.
    pub created: bool,
}

/// Filters for [`Client::list_listeners`]; the default lists every ACTIVE listener.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListenerQuery {
    /// Only listeners of this kind; `None` for any.
    pub kind: Option<pb::ListenerKind>,
    /// Only listeners with exactly this workflow id.
    pub workflow_id: Option<String>,
    /// Only listeners with exactly this instance id.
    pub instance_id: Option<String>,
    /// Also lists FIRED and TIMED_OUT listeners.
    pub include_finished: bool,
    /// Listeners per page; 0 lets the server choose (100), at most 1000.
    pub page_size: u32,
}

impl Client {
    /// Connects to the server at `endpoint`, for example `http://127.0.0.1:50051`; an endpoint
    /// without a scheme gets `http://`. An `https://` endpoint is reached over TLS, trusting the
    /// system's root certificates (see [`connect_tls`](Self::connect_tls) for others), never in
    /// plaintext.
    ///
    /// Returns [`Error::Transport`] when the endpoint is not a valid URI or the connection
    /// cannot be made within 5 seconds. Once connected, the channel reconnects by itself.
    pub async fn connect(endpoint: impl Into<String>) -> Result<Self, Error> {
        let channel = Self::endpoint(endpoint)?.connect().await?;
        Ok(Self::from_channel(channel))
    }

    /// Connects to the server at `endpoint` over TLS with `tls`: the CA certificates to trust
    /// ([`Certificate`](tonic::transport::Certificate)s), and for mutual TLS the client's
    /// [`Identity`](tonic::transport::Identity). An endpoint without a scheme gets `https://`.
    ///
    /// Returns [`Error::InvalidArgument`] for an `http://` endpoint, and [`Error::Transport`] as
    /// [`connect`](Self::connect) does, or when the handshake fails.
    pub async fn connect_tls(endpoint: impl Into<String>, tls: ClientTlsConfig) -> Result<Self, Error> {
        let channel = Self::endpoint_with_tls(endpoint, Some(tls))?.connect().await?;
        Ok(Self::from_channel(channel))
    }

    /// Creates a client for `endpoint` without connecting; the first call connects.
    ///
    /// Returns [`Error::Transport`] when the endpoint is not a valid URI.
    pub fn connect_lazy(endpoint: impl Into<String>) -> Result<Self, Error> {
        Ok(Self::from_channel(Self::endpoint(endpoint)?.connect_lazy()))
    }

    /// Returns the endpoint [`connect`](Self::connect) uses, for callers that want to change its
    /// settings before connecting: a 5 second connect timeout, TCP keepalive every 30 seconds,
    /// `TCP_NODELAY`, and HTTP/2 PINGs every 30 seconds while calls are open, with a 10 second
    /// timeout. There is no per-call timeout, because Subscribe streams are long-lived.
    ///
    /// An `https://` endpoint uses TLS, trusting the system's root certificates.
    ///
    /// Returns [`Error::Transport`] when the endpoint is not a valid URI.
    pub fn endpoint(endpoint: impl Into<String>) -> Result<Endpoint, Error> {
        Self::endpoint_with_tls(endpoint, None)
    }

    /// Returns the endpoint of [`endpoint`](Self::endpoint), over TLS with `tls` when it is set:
    /// then an endpoint without a scheme gets `https://`. Without `tls`, an `https://` endpoint
    /// still uses TLS (with the system's root certificates): `https://` never means plaintext.
    ///
    /// Returns [`Error::InvalidArgument`] for TLS settings with an `http://` endpoint, and
    /// [`Error::Transport`] when the endpoint is not a valid URI.
    pub fn endpoint_with_tls(endpoint: impl Into<String>, tls: Option<ClientTlsConfig>) -> Result<Endpoint, Error> {
        let mut endpoint = endpoint.into();
        if !endpoint.contains("://") {
            endpoint.insert_str(0, if tls.is_some() { "https://" } else { "http://" });
        }
        let https = endpoint.starts_with("https://");
        let tls = match tls {
            Some(_) if !https => {
                return Err(Error::InvalidArgument {
                    what: "endpoint",
                    reason: format!("{endpoint} is plaintext, but TLS settings were given: use https://"),
                });
            }
            Some(tls) => Some(tls),
            None => https.then(|| ClientTlsConfig::new().with_enabled_roots()),
        };
        let mut endpoint = Endpoint::from_shared(endpoint)?;
        if let Some(tls) = tls {
            endpoint = endpoint.tls_config(tls)?;
        }
        Ok(endpoint
            .connect_timeout(CONNECT_TIMEOUT)
            .tcp_nodelay(true)
            .tcp_keepalive(Some(TCP_KEEPALIVE))
            .http2_keep_alive_interval(HTTP2_KEEPALIVE_INTERVAL)
            .keep_alive_timeout(HTTP2_KEEPALIVE_TIMEOUT)
            .keep_alive_while_idle(false))
    }

    /// Creates a client on an existing channel.
    pub fn from_channel(channel: Channel) -> Self {
        let token = BearerToken::default();
        Self { raw: raw_client(channel.clone(), token.clone()), channel, token, trace: TraceSource::task_local() }
    }

    /// Returns the client with `token` sent as `authorization: Bearer <token>` on every call,
    /// those of [`raw`](Self::raw) and Subscribe reconnects included. Send tokens over TLS only,
    /// except to a server on loopback.
    ///
    /// Returns [`Error::InvalidArgument`] when the token is empty or not printable ASCII.
    pub fn with_token(mut self, token: &str) -> Result<Self, Error> {
        let invalid = |reason: &str| Error::InvalidArgument { what: "token", reason: reason.into() };
        if token.is_empty() || !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(invalid("must be non-empty printable ASCII without spaces"));
        }
        let value = format!("Bearer {token}").parse().map_err(|_| invalid("is not a valid metadata value"))?;
        self.token = BearerToken { authorization: Some(value) };
        self.raw = raw_client(self.channel.clone(), self.token.clone());
        Ok(self)
    }

    /// Returns the client with `source` as its trace context source: it is called before each
    /// call (and each Subscribe reconnect) and what it returns is sent as `traceparent` /
    /// `tracestate` metadata. Replaces the default, the task-local of
    /// [`trace::scope`](crate::trace::scope).
    pub fn with_trace_source<F>(mut self, source: F) -> Self
    where
        F: Fn() -> Option<TraceContext> + Send + Sync + 'static,
    {
        self.trace = TraceSource::from_fn(source);
        self
    }

    /// Returns the generated client on the same channel, for the calls this layer does not wrap
    /// (events and dead letters). It sends no trace context by itself; use
    /// [`WithTrace`](crate::trace::WithTrace) on its requests.
    pub fn raw(&self) -> RawClient {
        self.raw.clone()
    }

    /// Returns the generated TokenService client on the same channel, with the same token: API
    /// tokens are created, listed, shown and revoked with it (an admin token of every namespace
    /// is needed).
    pub fn tokens(&self) -> TokensClient {
        TokenServiceClient::with_interceptor(self.channel.clone(), self.token.clone())
    }

    /// Publishes events to `namespace` and returns one result per event, in order.
    ///
    /// Events with a (`source`, `id`) already stored come back as duplicates with the original
    /// sequence, so retrying with the same events is safe. Errors: `INVALID_ARGUMENT` (the whole
    /// batch is rejected), `RESOURCE_EXHAUSTED` (more than 1000 events or too large), `UNAVAILABLE`.
    pub async fn publish(
        &self,
        namespace: impl Into<String>,
        events: impl IntoIterator<Item = pb::CloudEvent>,
    ) -> Result<Vec<pb::PublishResult>, Error> {
        let request = pb::PublishRequest { namespace: namespace.into(), events: events.into_iter().collect() };
        let response = self.raw.clone().publish(self.request(request)).await?;
        Ok(response.into_inner().results)
    }

    /// Opens a [`Publisher`]: one PublishStream call on which many publishes can be in flight,
    /// the fast way to publish many events. The call carries the trace context current now.
    pub async fn publisher(&self) -> Result<Publisher, Error> {
        let mut raw = self.raw.clone();
        Publisher::open(|requests| {
            let request = self.request(requests);
            async move { raw.publish_stream(request).await }
        })
        .await
    }

    /// Registers a listener in `namespace` and returns it with its id.
    pub async fn register_listener(
        &self,
        namespace: impl Into<String>,
        spec: impl Into<pb::ListenerSpec>,
    ) -> Result<pb::Listener, Error> {
        Ok(self.register(namespace.into(), spec.into(), String::new()).await?.listener)
    }

    /// Registers a listener idempotently: a retry with the same `request_id` and spec returns the
    /// listener already registered, with `created` false.
    ///
    /// Returns `ALREADY_EXISTS` when `request_id` was used for a different spec.
    pub async fn register_listener_with_request_id(
        &self,
        namespace: impl Into<String>,
        spec: impl Into<pb::ListenerSpec>,
        request_id: impl Into<String>,
    ) -> Result<Registration, Error> {
        self.register(namespace.into(), spec.into(), request_id.into()).await
    }

    async fn register(
        &self,
        namespace: String,
        spec: pb::ListenerSpec,
        request_id: String,
    ) -> Result<Registration, Error> {
        let request = pb::RegisterListenerRequest { namespace, listener: Some(spec), request_id, look_back: None };
        let response = self.raw.clone().register_listener(self.request(request)).await?.into_inner();
        let listener = response.listener.ok_or_else(|| missing("RegisterListenerResponse.listener"))?;
        Ok(Registration { listener, created: response.created })
    }

    /// Returns the listener `id` of `namespace`, active or finished; `NOT_FOUND` if there is none.
    pub async fn get_listener(
        &self,
        namespace: impl Into<String>,
        id: impl Into<String>,
    ) -> Result<pb::Listener, Error> {
        let request =
            pb::GetListenerRequest { namespace: namespace.into(), id: id.into(), include_partial_state: false };
        let response = self.raw.clone().get_listener(self.request(request)).await?.into_inner();
        response.listener.ok_or_else(|| missing("GetListenerResponse.listener"))
    }

    /// Returns every listener of `namespace` that passes `query`, in registration order,
    /// following page tokens to the end.
    pub async fn list_listeners(
        &self,
        namespace: impl Into<String>,
        query: &ListenerQuery,
    ) -> Result<Vec<pb::Listener>, Error> {
        let namespace = namespace.into();
        let mut listeners = Vec::new();
        let mut page_token = String::new();
        loop {
            let page = self.list_listeners_page(namespace.clone(), query, page_token).await?;
            listeners.extend(page.listeners);
            if page.next_page_token.is_empty() {
                return Ok(listeners);
            }
            page_token = page.next_page_token;
        }
    }

    /// Returns one page of the listeners of `namespace` that pass `query`; pass the previous
    /// page's `next_page_token` (empty for the first page).
    pub async fn list_listeners_page(
        &self,
        namespace: impl Into<String>,
        query: &ListenerQuery,
        page_token: impl Into<String>,
    ) -> Result<pb::ListListenersResponse, Error> {
        let request = pb::ListListenersRequest {
            namespace: namespace.into(),
            kind: query.kind.unwrap_or(pb::ListenerKind::Unspecified).into(),
            workflow_id: query.workflow_id.clone().unwrap_or_default(),
            instance_id: query.instance_id.clone().unwrap_or_default(),
            include_finished: query.include_finished,
            page_size: i32::try_from(query.page_size).unwrap_or(i32::MAX),
            page_token: page_token.into(),
        };
        Ok(self.raw.clone().list_listeners(self.request(request)).await?.into_inner())
    }

    /// Deletes the listener `id` of `namespace` with its partial state; deleting an active WAIT
    /// listener cancels the wait. `NOT_FOUND` if there is none.
    pub async fn delete_listener(&self, namespace: impl Into<String>, id: impl Into<String>) -> Result<(), Error> {
        let request = pb::DeleteListenerRequest { namespace: namespace.into(), id: id.into() };
        self.raw.clone().delete_listener(self.request(request)).await?;
        Ok(())
    }

    /// Deletes every START listener of `namespace` for `workflow_id` and returns how many there
    /// were.
    pub async fn delete_listeners_for_workflow(
        &self,
        namespace: impl Into<String>,
        workflow_id: impl Into<String>,
    ) -> Result<u64, Error> {
        self.delete_listeners(namespace.into(), pb::delete_listeners_request::Selector::WorkflowId(workflow_id.into()))
            .await
    }

    /// Deletes every WAIT listener of `namespace` for `instance_id` and returns how many there
    /// were.
    pub async fn delete_listeners_for_instance(
        &self,
        namespace: impl Into<String>,
        instance_id: impl Into<String>,
    ) -> Result<u64, Error> {
        self.delete_listeners(namespace.into(), pb::delete_listeners_request::Selector::InstanceId(instance_id.into()))
            .await
    }

    async fn delete_listeners(
        &self,
        namespace: String,
        selector: pb::delete_listeners_request::Selector,
    ) -> Result<u64, Error> {
        let request = pb::DeleteListenersRequest { namespace, selector: Some(selector) };
        Ok(self.raw.clone().delete_listeners(self.request(request)).await?.into_inner().deleted_count)
    }

    /// Opens a notification stream for a consumer group; see [`Subscription`] for reconnects.
    ///
    /// The first attempt is made here and its error is returned as it is, so a wrong address, a
    /// bad setting (`INVALID_ARGUMENT`) or a group created with other filters
    /// (`FAILED_PRECONDITION`) shows at once. The trace context current at this call is sent on
    /// every reconnect too.
    pub async fn subscribe(&self, options: SubscribeOptions) -> Result<Subscription, Error> {
        Subscription::open(self.clone(), options, self.trace.get()).await
    }

    /// Acks notification `sequences` of a consumer group and returns how many were unsettled.
    /// Acking an acked, dead or unknown sequence changes nothing.
    pub async fn ack(
        &self,
        namespace: impl Into<String>,
        consumer_group: impl Into<String>,
        sequences: impl IntoIterator<Item = u64>,
    ) -> Result<u32, Error> {
        let request = pb::AckRequest {
            namespace: namespace.into(),
            consumer_group: consumer_group.into(),
            sequences: sequences.into_iter().collect(),
        };
        Ok(self.raw.clone().ack(self.request(request)).await?.into_inner().acked_count)
    }

    /// Nacks notification `sequence` of a consumer group: it is redelivered after `retry_after`
    /// (zero: at once) unless that was its last attempt. Returns whether it became a dead letter,
    /// with `reason` as its last error (cut to the server's 1024 bytes on a character boundary,
    /// so a long error chain cannot make the nack fail).
    pub async fn nack(
        &self,
        namespace: impl Into<String>,
        consumer_group: impl Into<String>,
        sequence: u64,
        retry_after: Duration,
        reason: impl Into<String>,
    ) -> Result<bool, Error> {
        let request = pb::NackRequest {
            namespace: namespace.into(),
            consumer_group: consumer_group.into(),
            sequence,
            retry_after: proto_time::nonzero_duration(retry_after),
            reason: truncated(reason.into(), MAX_REASON_BYTES),
        };
        Ok(self.raw.clone().nack(self.request(request)).await?.into_inner().dead_lettered)
    }

    /// Wraps a message in a request carrying the current trace context.
    fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        self.trace.apply(request.metadata_mut());
        request
    }
}

fn raw_client(channel: Channel, token: BearerToken) -> RawClient {
    EventBusServiceClient::with_interceptor(channel, token).max_decoding_message_size(MAX_DECODING_MESSAGE_SIZE)
}

/// The longest Nack reason the server takes, in bytes.
const MAX_REASON_BYTES: usize = 1024;

/// Cuts `s` to at most `max` bytes without splitting a character.
fn truncated(mut s: String, max: usize) -> String {
    s.truncate(s.floor_char_boundary(max));
    s
}

/// Returns the error for a required response field the server left unset.
fn missing(field: &str) -> Error {
    Error::from(tonic::Status::internal(format!("server response without {field}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nack_reasons_are_cut_on_a_character_boundary() {
        assert_eq!(truncated("abc".into(), 1024), "abc");
        assert_eq!(truncated("a".repeat(1030), 1024).len(), 1024);
        // 'é' is two bytes: cutting at 1024 would split the last one.
        let cut = truncated(format!("a{}", "é".repeat(600)), 1024);
        assert_eq!((cut.len(), cut.chars().last()), (1023, Some('é')));
    }

    #[test]
    fn endpoint_defaults_scheme_and_timeouts() {
        let endpoint = Client::endpoint("127.0.0.1:50051").unwrap();
        assert_eq!(endpoint.uri().to_string(), "http://127.0.0.1:50051/");
        assert_eq!(endpoint.get_connect_timeout(), Some(CONNECT_TIMEOUT));
        assert_eq!(endpoint.get_tcp_keepalive(), Some(TCP_KEEPALIVE));
        assert!(endpoint.get_tcp_nodelay());
        let endpoint = Client::endpoint("https://bus.example.com").unwrap();
        assert_eq!(endpoint.uri().scheme_str(), Some("https"));
    }

    #[test]
    fn tls_settings_make_the_default_scheme_https_and_refuse_http() {
        let endpoint = Client::endpoint_with_tls("127.0.0.1:50051", Some(ClientTlsConfig::new())).unwrap();
        assert_eq!(endpoint.uri().to_string(), "https://127.0.0.1:50051/");
        let error = Client::endpoint_with_tls("http://127.0.0.1:50051", Some(ClientTlsConfig::new())).unwrap_err();
        assert_eq!(
            error.to_string(),
            "invalid endpoint: http://127.0.0.1:50051 is plaintext, but TLS settings were given: use https://"
        );
    }

    #[tokio::test]
    async fn https_never_falls_back_to_plaintext() {
        // A TCP server that answers nothing: the client must open with a TLS handshake record,
        // not the plaintext HTTP/2 preface ("PRI * HTTP/2.0").
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (socket, _) = listener.accept().await.unwrap();
            let mut first = [0u8; 1];
            socket.peek(&mut first).await.unwrap();
            first[0]
        });
        let error = Client::connect(format!("https://{addr}")).await.unwrap_err();
        assert!(matches!(error, Error::Transport(_)), "{error:?}");
        let first = tokio::time::timeout(Duration::from_secs(5), server).await.expect("a connection").unwrap();
        assert_eq!(first, 0x16, "a TLS handshake record");
    }

    #[tokio::test]
    async fn request_carries_trace_source_context() {
        let client = Client::connect_lazy("127.0.0.1:1").unwrap().with_trace_source(|| {
            Some(TraceContext::new("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "a=b"))
        });
        let request = client.request(());
        assert_eq!(
            crate::trace::TraceContext::extract(request.metadata()).map(|c| c.tracestate),
            Some("a=b".to_owned())
        );
    }

    #[test]
    fn tokens_are_sent_as_bearer_authorization() {
        let authorization = |mut token: BearerToken| {
            let request = token.call(tonic::Request::new(())).unwrap();
            request.metadata().get("authorization").map(|v| v.to_str().unwrap().to_owned())
        };
        assert_eq!(authorization(BearerToken::default()), None);
        let token = BearerToken { authorization: Some("Bearer ebt_secret".parse().unwrap()) };
        assert_eq!(authorization(token).as_deref(), Some("Bearer ebt_secret"));
    }

    #[tokio::test]
    async fn tokens_must_be_printable_ascii() {
        let client = Client::connect_lazy("127.0.0.1:1").unwrap();
        assert!(client.clone().with_token("ebt_secret").is_ok());
        for bad in ["", "two words", "caf\u{e9}", "line\nbreak"] {
            let error = client.clone().with_token(bad).unwrap_err();
            assert!(matches!(error, Error::InvalidArgument { what: "token", .. }), "{bad:?}: {error:?}");
        }
    }

    #[tokio::test]
    async fn unreachable_server_fails_with_retryable_error() {
        // Port 1 on localhost refuses connections.
        let client = Client::connect_lazy("127.0.0.1:1").unwrap();
        let error = client.publish("ns", []).await.unwrap_err();
        assert!(error.is_retryable(), "{error:?}");
    }
}
