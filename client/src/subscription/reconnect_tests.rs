//! Reconnect behaviour of [`Subscription`] against an in-process fake server that scripts how
//! each Subscribe call goes.

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex},
    time::Duration,
};

use futures::{StreamExt, stream::BoxStream};
use tokio::net::TcpListener;
use tonic::{Request, Response, Status, transport::server::TcpIncoming};

use super::*;
use crate::pb::event_bus_service_server::{EventBusService, EventBusServiceServer};

const TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

/// How one Subscribe call goes: rejected at once, or a stream of these messages.
enum Call {
    Reject(Status),
    Stream(Vec<Result<pb::SubscribeResponse, Status>>),
}

#[derive(Default)]
struct Recorded {
    subscribe_traceparents: Vec<String>,
    acks: Vec<pb::AckRequest>,
    nacks: Vec<pb::NackRequest>,
}

#[derive(Clone, Default)]
struct Fake {
    script: Arc<Mutex<VecDeque<Call>>>,
    recorded: Arc<Mutex<Recorded>>,
}

fn notification(sequence: u64) -> Result<pb::SubscribeResponse, Status> {
    let notification = pb::Notification { sequence, fire_id: format!("f{sequence}"), ..Default::default() };
    Ok(pb::SubscribeResponse { message: Some(Message::Notification(notification)) })
}

fn keepalive() -> Result<pb::SubscribeResponse, Status> {
    Ok(pb::SubscribeResponse { message: Some(Message::Keepalive(pb::Keepalive::default())) })
}

#[tonic::async_trait]
impl EventBusService for Fake {
    type SubscribeStream = BoxStream<'static, Result<pb::SubscribeResponse, Status>>;

    async fn subscribe(
        &self,
        request: Request<pb::SubscribeRequest>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        let traceparent = request.metadata().get("traceparent").and_then(|v| v.to_str().ok()).unwrap_or("");
        self.recorded.lock().unwrap().subscribe_traceparents.push(traceparent.to_owned());
        assert_eq!(request.get_ref().consumer_group, "g");
        let call = self.script.lock().unwrap().pop_front();
        match call {
            Some(Call::Reject(status)) => Err(status),
            Some(Call::Stream(messages)) => Ok(Response::new(futures::stream::iter(messages).boxed())),
            None => Err(Status::permission_denied("script exhausted")),
        }
    }

    async fn ack(&self, request: Request<pb::AckRequest>) -> Result<Response<pb::AckResponse>, Status> {
        self.recorded.lock().unwrap().acks.push(request.into_inner());
        Ok(Response::new(pb::AckResponse { acked_count: 1 }))
    }

    async fn nack(&self, request: Request<pb::NackRequest>) -> Result<Response<pb::NackResponse>, Status> {
        self.recorded.lock().unwrap().nacks.push(request.into_inner());
        Ok(Response::new(pb::NackResponse { dead_lettered: true }))
    }

    async fn publish(&self, _: Request<pb::PublishRequest>) -> Result<Response<pb::PublishResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }

    type PublishStreamStream = BoxStream<'static, Result<pb::PublishStreamResponse, Status>>;

    /// Takes every message and answers none.
    async fn publish_stream(
        &self,
        request: Request<tonic::Streaming<pb::PublishStreamRequest>>,
    ) -> Result<Response<Self::PublishStreamStream>, Status> {
        let mut requests = request.into_inner();
        tokio::spawn(async move { while let Ok(Some(_)) = requests.message().await {} });
        Ok(Response::new(futures::stream::pending().boxed()))
    }

    async fn register_listener(
        &self,
        _: Request<pb::RegisterListenerRequest>,
    ) -> Result<Response<pb::RegisterListenerResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }

    async fn get_listener(
        &self,
        _: Request<pb::GetListenerRequest>,
    ) -> Result<Response<pb::GetListenerResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }

    async fn list_listeners(
        &self,
        _: Request<pb::ListListenersRequest>,
    ) -> Result<Response<pb::ListListenersResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }

    async fn delete_listener(
        &self,
        _: Request<pb::DeleteListenerRequest>,
    ) -> Result<Response<pb::DeleteListenerResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }

    async fn delete_listeners(
        &self,
        _: Request<pb::DeleteListenersRequest>,
    ) -> Result<Response<pb::DeleteListenersResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }

    async fn list_dead_letters(
        &self,
        _: Request<pb::ListDeadLettersRequest>,
    ) -> Result<Response<pb::ListDeadLettersResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }

    async fn redrive_dead_letters(
        &self,
        _: Request<pb::RedriveDeadLettersRequest>,
    ) -> Result<Response<pb::RedriveDeadLettersResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }

    async fn get_event(&self, _: Request<pb::GetEventRequest>) -> Result<Response<pb::GetEventResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }

    async fn list_events(&self, _: Request<pb::ListEventsRequest>) -> Result<Response<pb::ListEventsResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }

    async fn list_namespaces(
        &self,
        _: Request<pb::ListNamespacesRequest>,
    ) -> Result<Response<pb::ListNamespacesResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }

    async fn delete_namespace(
        &self,
        _: Request<pb::DeleteNamespaceRequest>,
    ) -> Result<Response<pb::DeleteNamespaceResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }

    async fn list_consumer_groups(
        &self,
        _: Request<pb::ListConsumerGroupsRequest>,
    ) -> Result<Response<pb::ListConsumerGroupsResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }

    async fn get_consumer_group(
        &self,
        _: Request<pb::GetConsumerGroupRequest>,
    ) -> Result<Response<pb::GetConsumerGroupResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }

    async fn update_consumer_group(
        &self,
        _: Request<pb::UpdateConsumerGroupRequest>,
    ) -> Result<Response<pb::UpdateConsumerGroupResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }

    async fn seek_consumer_group(
        &self,
        _: Request<pb::SeekConsumerGroupRequest>,
    ) -> Result<Response<pb::SeekConsumerGroupResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }

    async fn delete_consumer_group(
        &self,
        _: Request<pb::DeleteConsumerGroupRequest>,
    ) -> Result<Response<pb::DeleteConsumerGroupResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }

    async fn explain_listener(
        &self,
        _: Request<pb::ExplainListenerRequest>,
    ) -> Result<Response<pb::ExplainListenerResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }

    async fn replay_events(
        &self,
        _: Request<pb::ReplayEventsRequest>,
    ) -> Result<Response<pb::ReplayEventsResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }
}

/// Serves `fake` on a fresh local port and returns a client connected to it.
async fn serve(fake: Fake, script: Vec<Call>) -> Client {
    fake.script.lock().unwrap().extend(script);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(EventBusServiceServer::new(fake))
            .serve_with_incoming(TcpIncoming::from(listener)),
    );
    Client::connect(format!("http://{addr}")).await.unwrap()
}

fn options() -> SubscribeOptions {
    SubscribeOptions {
        backoff: Backoff { initial: Duration::from_millis(1), max: Duration::from_millis(4) },
        ..SubscribeOptions::new("ns", "g")
    }
}

#[tokio::test]
async fn reconnects_on_retryable_errors_and_ends_on_permanent_one() {
    let fake = Fake::default();
    let client = serve(
        fake.clone(),
        vec![
            Call::Stream(vec![notification(1), Err(Status::unavailable("shutting down"))]),
            Call::Reject(Status::unavailable("still down")),
            Call::Reject(Status::internal("h2 protocol error")),
            // Ends without a status: unexpected, so a reconnect.
            Call::Stream(vec![keepalive(), notification(2)]),
            Call::Stream(vec![keepalive(), notification(3), Err(Status::failed_precondition("group changed"))]),
        ],
    )
    .await;

    let subscription =
        crate::trace::scope(TraceContext::new(TP, ""), async { client.subscribe(options()).await.unwrap() }).await;
    let items: Vec<_> = tokio::time::timeout(Duration::from_secs(10), subscription.collect::<Vec<_>>()).await.unwrap();

    assert_eq!(items.len(), 4, "{items:?}");
    let sequences: Vec<u64> = items[..3].iter().map(|item| item.as_ref().unwrap().notification().sequence).collect();
    assert_eq!(sequences, [1, 2, 3]);
    let error = items[3].as_ref().unwrap_err();
    assert_eq!(error.code(), tonic::Code::FailedPrecondition);
    // Five Subscribe calls, each with the trace context current when subscribe() was called.
    assert_eq!(fake.recorded.lock().unwrap().subscribe_traceparents, [TP; 5]);
}

#[tokio::test]
async fn first_attempt_errors_are_returned_by_subscribe() {
    let fake = Fake::default();
    let client = serve(fake.clone(), vec![Call::Reject(Status::invalid_argument("bad group"))]).await;
    let error = client.subscribe(options()).await.unwrap_err();
    assert_eq!(error.code(), tonic::Code::InvalidArgument);
    assert_eq!(fake.recorded.lock().unwrap().subscribe_traceparents, [""]);
}

#[tokio::test]
async fn deliveries_ack_and_nack_in_their_group() {
    let fake = Fake::default();
    let client = serve(fake.clone(), vec![Call::Stream(vec![notification(7), notification(8)])]).await;
    let mut subscription = client.subscribe(options()).await.unwrap();

    let first = subscription.next().await.unwrap().unwrap();
    assert_eq!(first.notification().fire_id, "f7");
    first.ack().await.unwrap();
    let second = subscription.next().await.unwrap().unwrap();
    assert!(second.nack(Duration::from_millis(1500), "boom").await.unwrap());

    let recorded = fake.recorded.lock().unwrap();
    assert_eq!(
        recorded.acks,
        [pb::AckRequest { namespace: "ns".into(), consumer_group: "g".into(), sequences: vec![7] }]
    );
    assert_eq!(
        recorded.nacks,
        [pb::NackRequest {
            namespace: "ns".into(),
            consumer_group: "g".into(),
            sequence: 8,
            retry_after: Some(prost_types::Duration { seconds: 1, nanos: 500_000_000 }),
            reason: "boom".into(),
        }]
    );
}

/// (The fake's PublishStream never answers.) A publish dropped while it waits for its answer, as
/// a caller's timeout drops it, leaves nothing behind in the publisher.
#[tokio::test]
async fn a_dropped_publish_stops_waiting_for_its_answer() {
    let client = serve(Fake::default(), Vec::new()).await;
    let publisher = client.publisher().await.unwrap();
    for i in 0..3 {
        let event = pb::CloudEvent { id: i.to_string(), ..Default::default() };
        let publish = publisher.publish("ns", [event]);
        assert!(tokio::time::timeout(Duration::from_millis(20), publish).await.is_err(), "the fake never answers");
    }
    assert_eq!(publisher.waiting(), 0);
}
