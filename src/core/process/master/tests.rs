use super::*;

#[test]
fn backoff_starts_at_once_doubles_and_forgets_after_a_healthy_life() {
    let mut failures = 0;
    let young = Duration::from_millis(10);
    let waits: Vec<u128> = (0..12)
        .map(|_| backoff(&mut failures, young).as_millis())
        .collect();
    assert_eq!(
        waits,
        [0, 100, 200, 400, 800, 1600, 3200, 6400, 12800, 25600, 30000, 30000]
    );
    assert_eq!(backoff(&mut failures, HEALTHY_AFTER), Duration::ZERO);
    assert_eq!(backoff(&mut failures, young), Duration::from_millis(100));
}
