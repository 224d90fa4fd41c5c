use eventbus_client::{Client, CloudEventBuilder, ListenerSpecBuilder, SubscribeOptions, pb};
use futures::StreamExt;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Like the CLI, this reads EVENTBUS_ADDR; without a scheme, http:// is assumed.
    let addr = std::env::var("EVENTBUS_ADDR").unwrap_or_else(|_| "http://127.0.0.1:50051".into());
    let client = Client::connect(addr).await?;

    // Start workflow "invoicing" once an order's payment AND shipment have both arrived. The
    // request id makes this safe to run again: the second time registers nothing new.
    let spec =
        ListenerSpecBuilder::start("invoicing").all(["payment.received", "shipment.sent"]).correlate_by(["orderid"]);
    client.register_listener_with_request_id("shop", spec, "start-invoicing").await?;

    let payment = CloudEventBuilder::new("/payments", "payment.received").extension("orderid", "42").build();
    let shipment = CloudEventBuilder::new("/shipping", "shipment.sent").extension("orderid", "42").build();
    client.publish("shop", [payment, shipment]).await?;

    // This group gets the START notifications of "invoicing" only.
    let options = SubscribeOptions {
        kinds: vec![pb::NotificationKind::Start],
        workflow_ids: vec!["invoicing".into()],
        ..SubscribeOptions::new("shop", "invoicing-runners")
    };
    let mut notifications = client.subscribe(options).await?;
    // A runner loops over the stream; this example handles the first notification and stops.
    if let Some(delivery) = notifications.next().await {
        let delivery = delivery?;
        let n = delivery.notification();
        println!("start {} for {:?} (fire {})", n.workflow_id, n.correlation, n.fire_id);
        // Run the workflow, idempotently on the fire id, then settle the notification.
        delivery.ack().await?;
    }
    Ok(())
}
