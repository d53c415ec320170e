//! Control frames on a batched stream: toggle, sampling, filters, drops.

mod support;

use std::time::Duration;

use snakepit_loadgen::Config;
use support::*;

fn paced() -> Config {
    Config {
        rate: 20_000.0,
        ..Config::default()
    }
}

#[tokio::test]
async fn frames_arrive_only_after_toggle_true() {
    let server = start(paced()).await;
    let mut client = server.client().await;
    let (controls, mut events) = open_batched(&mut client).await;
    assert!(
        next(&mut events, QUIET).await.is_none(),
        "frame before toggle(true)"
    );

    controls.toggle(true).await;
    let frame = next(&mut events, SOON)
        .await
        .expect("no frame after toggle(true)");
    assert!(!frame.events.is_empty());
    assert!(frame.emitted_total >= frame.events.len() as u64);
    assert!(
        frame.disabled_total > 0,
        "events due while off are counted as disabled"
    );
    assert_eq!(frame.dropped_total, 0);
    server.stop().await;
}

#[tokio::test]
async fn toggle_false_stops_and_true_resumes() {
    let server = start(paced()).await;
    let mut client = server.client().await;
    let (controls, mut events) = open_batched(&mut client).await;
    controls.toggle(true).await;
    next(&mut events, SOON)
        .await
        .expect("no frame after toggle(true)");

    controls.toggle(false).await;
    drain_until_quiet(&mut events, QUIET).await;
    assert!(
        next(&mut events, QUIET).await.is_none(),
        "frames after toggle(false)"
    );

    controls.toggle(true).await;
    let frame = next(&mut events, SOON)
        .await
        .expect("no frame after toggle(true) again");
    assert!(frame.disabled_total > 0);
    server.stop().await;
}

#[tokio::test]
async fn sampling_zero_stops_and_one_restores() {
    let server = start(paced()).await;
    let mut client = server.client().await;
    let (controls, mut events) = open_batched(&mut client).await;
    controls.toggle(true).await;
    next(&mut events, SOON)
        .await
        .expect("no frame after toggle(true)");

    controls.sampling(0.0, &[]).await;
    drain_until_quiet(&mut events, QUIET).await;
    assert!(
        next(&mut events, QUIET).await.is_none(),
        "frames at sampling 0.0"
    );

    controls.sampling(1.0, &[]).await;
    let frame = next(&mut events, SOON)
        .await
        .expect("no frame at sampling 1.0");
    assert!(
        frame.sampled_out_total > 0,
        "sampled-out events are counted"
    );
    assert_eq!(frame.dropped_total, 0, "sampled-out events are not drops");
    server.stop().await;
}

#[tokio::test]
async fn sampling_patterns_only_sample_matching_names() {
    let server = start(Config::default()).await;
    let mut client = server.client().await;
    let (controls, mut events) = open_batched(&mut client).await;
    controls.sampling(0.0, &["tool.*"]).await;
    controls.toggle(true).await;
    let frames = collect_events(&mut events, 2_000).await;
    let names: Vec<String> = frames.iter().flat_map(|f| &f.events).map(name).collect();
    assert!(
        names.iter().all(|n| !n.starts_with("tool.")),
        "tool events sampled at 0.0"
    );
    assert!(names.iter().any(|n| n.starts_with("python.")));
    server.stop().await;
}

#[tokio::test]
async fn filter_deny_wins_and_is_not_a_drop() {
    let server = start(Config::default()).await;
    let mut client = server.client().await;
    let (controls, mut events) = open_batched(&mut client).await;
    controls
        .filter(
            &["python.*", "tool.result_size"],
            &["python.call.*", "tool.*"],
        )
        .await;
    controls.toggle(true).await;
    let frames = collect_events(&mut events, 2_000).await;
    let names: Vec<String> = frames.iter().flat_map(|f| &f.events).map(name).collect();
    assert!(
        names
            .iter()
            .all(|n| n.starts_with("python.") && !n.starts_with("python.call.")),
        "{names:?}"
    );
    assert!(names
        .iter()
        .any(|n| n == "python.error.occurred" || n.ends_with(".sampled")));
    let last = frames.last().unwrap();
    assert!(last.filtered_out_total > 0);
    assert_eq!(last.dropped_total, 0);
    server.stop().await;
}

#[tokio::test]
async fn a_client_that_stops_reading_causes_counted_drops() {
    let config = Config {
        rate: 200_000.0,
        queue_capacity: 64,
        batch: 16,
        ..Config::default()
    };
    let server = start(config).await;
    let mut client = server.client().await;
    let (controls, mut events) = open_batched(&mut client).await;
    controls.toggle(true).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let deadline = tokio::time::Instant::now() + SOON;
    loop {
        let frame = next(&mut events, SOON).await.expect("no frames");
        if frame.dropped_total > 0 {
            assert!(frame.emitted_total > frame.dropped_total);
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "no drops reported");
    }
    // Cancel the call (both directions), as a client does.
    drop((controls, events));
    let totals = server.stop().await;
    assert!(totals.dropped > 0);
    assert_eq!(totals.filtered + totals.sampled_out, 0);
}
