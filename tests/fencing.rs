//! Fencing at the API: a write made for a leadership term that has ended is refused by the state machine,
//! changes nothing, and is answered with a reason of its own (`Fenced`), distinct from an ordinary 409
//! `Conflict` that a retry could fix. The replica is the real store code in this process, so that the test can
//! make writes fenced to any term.

mod harness;

use std::time::Duration;

use raftsman::apiserver::errors::{ApiError, FENCED_REASON};
use raftsman::apiserver::registry::objects::{Allocations, Consistency, Objects};
use raftsman::cluster::config::EVENT_TTL_DEFAULT;
use raftsman::store::disk::memory::MemoryDisk;
use serde_json::json;

const KEY: &str = "/registry/configmaps/default/fenced";

#[tokio::test]
async fn a_write_fenced_to_an_ended_term_is_refused_with_its_own_reason() {
    let store = harness::solo::replica(MemoryDisk::new(Duration::ZERO)).await;
    let term = store.leading_term().expect("leading");
    let object = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "fenced", "namespace": "default"}, "data": {"k": "v"}});
    let objects = Objects::new(store.clone(), EVENT_TTL_DEFAULT);

    let stale = objects.fenced(term - 1).put(KEY, &object, 0, &[], &Allocations::default(), false).await;
    let Err(error) = stale else { panic!("a write of term {} applied in term {term}: {stale:?}", term - 1) };
    assert!(matches!(error, ApiError::Fenced(t) if t == term - 1), "{error:?}");
    assert_eq!(error.code(), 409);
    assert_eq!(error.reason(), FENCED_REASON);
    assert_ne!(error.reason(), "Conflict", "a fenced write is not an ordinary conflict");
    assert_eq!(error.status()["reason"], FENCED_REASON);
    assert!(
        objects.get(KEY, Consistency::Linearizable).await.expect("read").is_none(),
        "the refused write changed nothing"
    );

    let current = objects.fenced(term).put(KEY, &object, 0, &[], &Allocations::default(), false).await;
    assert!(matches!(current, Ok(Ok(_))), "a write of the current term applies: {current:?}");
    assert!(objects.get(KEY, Consistency::Linearizable).await.expect("read").is_some());
}
