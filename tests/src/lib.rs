//! eventbus-tests: end-to-end suites over real sockets against the real server, on SQLite and
//! on Postgres. This library holds the harness: [`TestServer`] binds `127.0.0.1:0` first, hands
//! the listener to `serve`, then connects (no sleeps, no port races); dropping it shuts the
//! server down gracefully.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use eventbus_client::{Client, Delivery, Subscription, pb};
pub use eventbus_engine::store::Backend;
use eventbus_engine::store::StoreConfig;
use eventbus_server::ServerConfig;
use futures::StreamExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tonic::Code;
use tonic::Streaming;

pub mod certs;
pub mod http;

// The one test-database harness is the engine's testkit: `backend_cases!` runs each
// `async fn case(db: Database)` of the calling module as `sqlite::case` and `postgres::case`
// (or `postgres_only::case`, with `postgres only:`), each on a fresh `Database`, whose Postgres
// schema is dropped with the last handle on it.
pub use eventbus_engine::backend_cases;
pub use eventbus_engine::testkit::TestDatabase as Database;

/// A TCP proxy the test can cut, to take a database away from the server and give it back.
/// [`Self::cut`] closes every open connection and stops listening, so new connections are
/// refused, as with a database that is down; [`Self::freeze`] keeps every connection open but
/// silent, as with a network that drops packets; [`Self::restore`] listens on the same address
/// again.
#[derive(Debug)]
pub struct Proxy {
    pub addr: SocketAddr,
    upstream: SocketAddr,
    /// While listening: the accept loop, and the sender (one per listening period) whose drop
    /// closes every connection accepted in that period.
    listening: Option<(JoinHandle<()>, watch::Sender<()>)>,
    /// Whether the connections of the current listening period forward nothing.
    frozen: watch::Sender<bool>,
    /// The closing senders of frozen periods: their connections stay open, and silent, until
    /// [`Self::cut`] or the drop of the proxy.
    held: Vec<watch::Sender<()>>,
}

impl Proxy {
    /// Listens on `127.0.0.1:0` and forwards each connection to `upstream`.
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let frozen = watch::Sender::new(false);
        let listening = Some(Self::listen(listener, upstream, &frozen));
        Self { addr, upstream, listening, frozen, held: Vec::new() }
    }

    fn listen(
        listener: TcpListener,
        upstream: SocketAddr,
        frozen: &watch::Sender<bool>,
    ) -> (JoinHandle<()>, watch::Sender<()>) {
        let (open, open_rx) = watch::channel(());
        let frozen = frozen.subscribe();
        let task = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let mut open = open_rx.clone();
                let mut frozen = frozen.clone();
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(upstream).await else { return };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => return,
                        // Nothing is ever sent: this fails once the sender is dropped.
                        _ = open.changed() => return,
                        _ = frozen.wait_for(|f| *f) => {}
                    }
                    // Frozen: both ends stay open, and nothing passes, until the period ends.
                    let _ = open.changed().await;
                    drop((client, server));
                });
            }
        });
        (task, open)
    }

    /// Keeps every open connection open but forwards nothing any more, and accepts new
    /// connections without forwarding anything either, until [`Self::restore`] (which leaves
    /// the frozen connections hanging) or [`Self::cut`] (which closes them).
    pub fn freeze(&mut self) {
        self.frozen.send_replace(true);
    }

    /// Closes every open connection and refuses new ones until [`Self::restore`].
    pub async fn cut(&mut self) {
        if let Some((task, open)) = self.listening.take() {
            task.abort();
            let _ = task.await; // the listener is closed
            drop(open); // every connection closes
        }
        self.held.clear();
    }

    /// Listens and forwards again, on the same address. Connections frozen by [`Self::freeze`]
    /// stay open and silent: the server must give up on them by itself.
    pub async fn restore(&mut self) {
        if *self.frozen.borrow() {
            if let Some((task, open)) = self.listening.take() {
                task.abort();
                let _ = task.await;
                self.held.push(open);
            }
            self.frozen = watch::Sender::new(false);
        }
        assert!(self.listening.is_none(), "restore a cut or frozen proxy");
        let listener = TcpListener::bind(self.addr).await.unwrap();
        self.listening = Some(Self::listen(listener, self.upstream, &self.frozen));
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some((task, _)) = &self.listening {
            task.abort();
        }
    }
}

/// A server running in this process on an ephemeral port.
#[derive(Debug)]
pub struct TestServer {
    pub addr: SocketAddr,
    /// The HTTP listener's address, when started with [`Self::start_http`].
    pub http: Option<SocketAddr>,
    pub client: Client,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

impl TestServer {
    /// Starts a server on the database with test-friendly settings (short poll and keepalive).
    pub async fn start(db: &Database) -> Self {
        Self::start_with(db, |_| {}).await
    }

    pub async fn start_with(db: &Database, tweak: impl FnOnce(&mut ServerConfig)) -> Self {
        Self::start_connected(db, tweak, |addr| Client::connect(format!("http://{addr}"))).await
    }

    /// Starts a server like [`Self::start_with`] with an HTTP listener on `127.0.0.1:0` too
    /// ([`Self::http`]).
    pub async fn start_http(db: &Database, tweak: impl FnOnce(&mut ServerConfig)) -> Self {
        let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
        Self::start_listening(db, tweak, Some(http), |addr| Client::connect(format!("http://{addr}"))).await
    }

    /// Starts a server like [`Self::start_with`] and connects its client with `connect`, given
    /// the bound address (for example over TLS).
    pub async fn start_connected<F>(
        db: &Database,
        tweak: impl FnOnce(&mut ServerConfig),
        connect: impl FnOnce(SocketAddr) -> F,
    ) -> Self
    where
        F: Future<Output = Result<Client, eventbus_client::Error>>,
    {
        Self::start_listening(db, tweak, None, connect).await
    }

    /// Starts a server like [`Self::start_connected`], serving HTTP on `http` if given.
    pub async fn start_listening<F>(
        db: &Database,
        tweak: impl FnOnce(&mut ServerConfig),
        http: Option<TcpListener>,
        connect: impl FnOnce(SocketAddr) -> F,
    ) -> Self
    where
        F: Future<Output = Result<Client, eventbus_client::Error>>,
    {
        let mut store = StoreConfig::new(&db.url);
        store.sweep_interval = Duration::from_millis(200);
        let mut config = ServerConfig::new(store);
        config.poll_interval = Duration::from_millis(100);
        tweak(&mut config);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let http_addr = http.as_ref().map(|l| l.local_addr().unwrap());
        let (tx, rx) = oneshot::channel::<()>();
        let listeners = eventbus_server::Listeners { grpc: listener, http };
        let task = tokio::spawn(eventbus_server::serve(listeners, config, async move {
            let _ = rx.await;
        }));
        let client = connect(addr).await.unwrap();
        Self { addr, http: http_addr, client, shutdown: Some(tx), task: Some(task) }
    }

    /// Shuts down gracefully and waits until the server has stopped.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap().unwrap();
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// Every RPC of EventBusService, by name.
pub const METHODS: [&str; 22] = [
    "Publish",
    "RegisterListener",
    "GetListener",
    "ListListeners",
    "DeleteListener",
    "DeleteListeners",
    "Subscribe",
    "Ack",
    "Nack",
    "ListDeadLetters",
    "RedriveDeadLetters",
    "GetEvent",
    "ListEvents",
    "ListNamespaces",
    "DeleteNamespace",
    "ListConsumerGroups",
    "GetConsumerGroup",
    "UpdateConsumerGroup",
    "SeekConsumerGroup",
    "DeleteConsumerGroup",
    "ExplainListener",
    "ReplayEvents",
];

/// The source of the events the suites publish.
pub const SOURCE: &str = "/tests";

/// A minimal event of type `ty` with id `id`, from [`SOURCE`].
pub fn event(ty: &str, id: &str) -> pb::CloudEvent {
    eventbus_client::CloudEventBuilder::new(SOURCE, ty).id(id).build()
}

/// The store's form of a minimal event of type `ty` with id `id`, from [`SOURCE`] (for cases that
/// drive a [`eventbus_engine::store::Store`] directly).
pub fn engine_event(ty: &str, id: &str) -> eventbus_engine::Event {
    eventbus_engine::Event {
        namespace: String::new(),
        sequence: 0,
        id: id.into(),
        source: SOURCE.into(),
        specversion: "1.0".into(),
        event_type: ty.into(),
        subject: None,
        time: None,
        datacontenttype: None,
        dataschema: None,
        extensions: Default::default(),
        data: None,
        received_at: Default::default(),
        trace: Default::default(),
    }
}

/// The store's form of a START listener of `workflow` on every event of type `ty`.
pub fn spec_one(workflow: &str, ty: &str) -> eventbus_engine::ListenerSpec {
    eventbus_engine::ListenerSpec {
        kind: eventbus_engine::ListenerKind::Start,
        target: workflow.into(),
        condition: eventbus_engine::Condition::One,
        types: vec![ty.into()],
        filters: Vec::new(),
        lifespan: None,
        correlate_by: Vec::new(),
        policy: None,
        deadline: None,
    }
}

/// A string-valued CloudEvents extension attribute.
pub fn string_attr(s: &str) -> pb::cloud_event::CloudEventAttributeValue {
    use pb::cloud_event::cloud_event_attribute_value::Attr;
    pb::cloud_event::CloudEventAttributeValue { attr: Some(Attr::CeString(s.into())) }
}

/// How long the suites wait for what should come at once (a notification, a stream's end).
pub const WAIT: Duration = Duration::from_secs(10);

/// Awaits `f`, failing the test with "`what` within `limit`" if it takes longer.
pub async fn within<T>(limit: Duration, what: &str, f: impl Future<Output = T>) -> T {
    tokio::time::timeout(limit, f).await.unwrap_or_else(|_| panic!("{what} within {limit:?}"))
}

/// The next delivery of `sub`, within `limit` (failing the test with `what` otherwise); the
/// subscription must neither end nor fail.
pub async fn delivery_within(limit: Duration, what: &str, sub: &mut Subscription) -> Delivery {
    within(limit, what, sub.next()).await.expect("the subscription goes on").expect("a delivery, not an error")
}

/// The next delivery of `sub`, within [`WAIT`].
pub async fn next_delivery(sub: &mut Subscription) -> Delivery {
    delivery_within(WAIT, "a notification", sub).await
}

/// The next message of a raw Subscribe stream, within [`WAIT`]: it must be a notification.
pub async fn next_notification(stream: &mut Streaming<pb::SubscribeResponse>) -> pb::Notification {
    let message = within(WAIT, "a notification", stream.message()).await.expect("the stream goes on");
    let Some(pb::subscribe_response::Message::Notification(n)) = message.and_then(|m| m.message) else {
        panic!("a notification")
    };
    n
}

/// Reads a stream to its end, within `limit`: the code of the status it ends with, or `None`
/// when it ends without one.
pub async fn stream_end<T>(limit: Duration, stream: &mut Streaming<T>) -> Option<Code> {
    within(limit, "the stream to end", async {
        loop {
            match stream.message().await {
                Ok(Some(_)) => continue,
                Ok(None) => return None,
                Err(status) => return Some(status.code()),
            }
        }
    })
    .await
}

/// The dead letters of a consumer group (the first page), through the raw ListDeadLetters call.
pub async fn dead_letters(client: &Client, namespace: &str, group: &str) -> Result<Vec<pb::DeadLetter>, tonic::Status> {
    let request =
        pb::ListDeadLettersRequest { namespace: namespace.into(), consumer_group: group.into(), ..Default::default() };
    Ok(client.raw().list_dead_letters(request).await?.into_inner().dead_letters)
}

/// The fields named by the `google.rpc.BadRequest` field violations of a status, in order.
pub fn field_violations(status: &tonic::Status) -> Vec<String> {
    use tonic_types::StatusExt;
    status
        .get_details_bad_request()
        .map(|b| b.field_violations.into_iter().map(|v| v.field).collect())
        .unwrap_or_default()
}
