//! Routing of decoded responses, with handler queues the test reads.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{mpsc, watch};

use super::*;
use crate::engine::{Engine, EngineConfig, Manifold};
use crate::ingest::decode::decode;
use crate::plugin::wit::{Batch, JsonBatch};

fn route(plugin: &str, capacity: usize) -> (Route, mpsc::Receiver<Arc<Delivery>>) {
    let (queue, rx) = mpsc::channel(capacity);
    let failing = watch::Sender::new(false).subscribe();
    (
        Route {
            plugin: plugin.to_owned(),
            queue,
            failing,
        },
        rx,
    )
}

struct Rig {
    responses: mpsc::Sender<Response>,
    ledger: Arc<Ledger>,
    _engine: crate::engine::EngineHandle,
}

fn rig(routes: HashMap<String, Route>) -> Rig {
    let (responses, rx) = mpsc::channel(4);
    let ledger = Arc::new(Ledger::new());
    let routes = watch::Sender::new(Arc::new(routes)).subscribe();
    let dispatch = Arc::new(Dispatch::new(rx, routes, Arc::clone(&ledger)));
    let manifold = Manifold::new("dispatch", &[], move |ctx| Arc::clone(&dispatch).run(ctx));
    let engine = Engine::start(EngineConfig::default(), vec![manifold]).expect("starts");
    Rig {
        responses,
        ledger,
        _engine: engine,
    }
}

async fn send(rig: &Rig, body: &str) {
    let decoded = decode(body.as_bytes()).expect("a JSON array");
    rig.ledger
        .received(crate::ingest::received_counts(&decoded));
    let response = Response {
        decoded,
        received_at: Instant::now(),
    };
    rig.responses.send(response).await.expect("dispatch runs");
}

#[tokio::test]
async fn each_type_goes_to_its_handler_as_one_batch_in_order() {
    let (load, mut load_rx) = route("load_avg", 4);
    let (disk, mut disk_rx) = route("disk", 4);
    let routes = HashMap::from([
        ("load_avg".to_owned(), load),
        ("disk_usage".to_owned(), disk),
    ]);
    let rig = rig(routes);
    send(
        &rig,
        r#"[{"type":"load_avg","payload":{"value":1}},
            {"type":"disk_usage","payload":{"value":{"/":0.5}}},
            {"type":"load_avg","payload":{"value":2}},
            {"type":"cpu_usage","payload":{"value":[0.5]}},
            {"type":"load_avg","payload":{"value":"x"}}]"#,
    )
    .await;
    let loads = load_rx.recv().await.expect("a load batch");
    assert_eq!(loads.batch, Batch::LoadAvg(vec![1.0, 2.0]));
    let disks = disk_rx.recv().await.expect("a disk batch");
    let expected = JsonBatch {
        kind: "disk_usage".into(),
        values: vec![r#"{"/":0.5}"#.into()],
    };
    assert_eq!(disks.batch, Batch::Json(expected));
    assert!(
        load_rx.try_recv().is_err(),
        "one batch per type per response"
    );

    let accounts = rig.ledger.snapshot();
    assert_eq!(accounts.of("cpu_usage").rejected[UNHANDLED], 1);
    assert_eq!(accounts.of("load_avg").rejected["wrong_shape"], 1);
    assert_eq!(
        accounts.of("load_avg").in_flight(),
        2,
        "routed, not yet applied"
    );
    let recent: Vec<_> = accounts.recent().map(|r| r.reason).collect();
    assert_eq!(recent, ["wrong_shape", UNHANDLED]);
}

#[tokio::test]
async fn a_full_queue_holds_dispatch_until_there_is_room() {
    let (load, mut load_rx) = route("load_avg", 1);
    let rig = rig(HashMap::from([("load_avg".to_owned(), load)]));
    for value in 1..=3 {
        send(
            &rig,
            &format!(r#"[{{"type":"load_avg","payload":{{"value":{value}}}}}]"#),
        )
        .await;
    }
    for value in 1..=3 {
        let delivery = load_rx.recv().await.expect("a batch");
        assert_eq!(delivery.batch, Batch::LoadAvg(vec![f64::from(value)]));
    }
    assert_eq!(
        rig.ledger.snapshot().of("load_avg").rejected_total(),
        0,
        "nothing shed"
    );
}

#[tokio::test]
async fn a_failing_handler_is_shed_when_its_queue_is_full() {
    let (queue, mut rx) = mpsc::channel(1);
    let failing = watch::Sender::new(false);
    let load = Route {
        plugin: "load_avg".to_owned(),
        queue,
        failing: failing.subscribe(),
    };
    let rig = rig(HashMap::from([("load_avg".to_owned(), load)]));
    send(&rig, r#"[{"type":"load_avg","payload":{"value":1}}]"#).await;
    send(
        &rig,
        r#"[{"type":"load_avg","payload":{"value":2}},{"type":"load_avg","payload":{"value":3}}]"#,
    )
    .await;
    // The queue holds the first batch; the second waits, until the handler
    // is known to be failing.
    let mut accounts = rig.ledger.subscribe();
    failing.send_replace(true);
    accounts
        .wait_for(|a| a.of("load_avg").rejected.get(HANDLER_FAILING) == Some(&2))
        .await
        .expect("the ledger lives");
    assert_eq!(
        rx.recv().await.expect("the first batch").batch,
        Batch::LoadAvg(vec![1.0])
    );
}
