//! Per-sensor counter rules (PROTOCOL.md section 6, rules 1 to 8): from a counter report's totals
//! to the entries and exits it adds, with the sensor's baseline moved as the rules say.
//!
//! The storage code reads a [`SensorState`] from the sensor's row (locked in the batch
//! transaction), calls [`apply_counter`] (or [`apply_events`](super::event::apply_events)) once per
//! report in receive order, and writes the state back. Everything here is pure and deterministic:
//! no I/O, no clock (the report's trusted time comes in the [`CounterReading`]).
//!
//! Duplicates (rule 8, an identical payload) are found by the storage code on its unique key and
//! never reach these functions: a duplicate passed here would be read as a late report or a plain
//! report adding nothing, which is right for counters but not for events.
//!
//! Decisions where PROTOCOL.md leaves room:
//! - A v2 report with the restart flag is not judged late by its message counter (the restart set
//!   the counter back to 0) but by its trusted time, as a legacy report is; so is a v2 report
//!   after a baseline without a message counter (firmware upgraded from legacy).
//! - Missed messages are counted only on applied v2 reports: the counter's gap minus one, or,
//!   when the report reads as a restart, the counter itself (the attempts since the restart's 0).
//!   A late report does not give back a message already counted as missed.
//! - A first report with the restart flag sets the baseline and counts the restart.
//! - An anomaly is decided for the whole report, as a restart is: if either delta is above
//!   `ingest.max_delta`, neither is added (adding entries without their exits would drift).
//! - A total at or above a custom modulus (the setting does not match the firmware) is read as
//!   being at the modulus, so a wrap from it still adds the new total.

use chrono::{DateTime, Utc};

use super::{Delta, Direction, Mode};
use crate::modules::ingest::IngestConf;

/// The counter modulus of firmware that wraps at the end of its u16 totals.
pub const DEFAULT_MODULUS: u32 = 65536;

/// How far ahead (modulo 65536) a v2 message counter may be and still be newer.
const NEWER_WINDOW: u16 = 32767;

/// A sensor's counter settings, from its row and the `[ingest]` section.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// How the sensor is mounted: reversed swaps in and out (rule 7).
    pub direction: Direction,
    /// Where the totals wrap to 0 (rule 4): [`DEFAULT_MODULUS`] unless the firmware wraps earlier.
    pub modulus: u32,
    /// `ingest.wrap_window`: how near the modulus and 0 a wrap's two totals are.
    pub wrap_window: u32,
    /// `ingest.max_delta`: a larger delta in one report is an anomaly (rule 6).
    pub max_delta: u32,
}

impl Settings {
    /// The settings of a sensor mounted `direction` whose totals wrap at `modulus` (`None`: the
    /// default), with the limits of `conf`.
    pub fn new(direction: Direction, modulus: Option<u32>, conf: &IngestConf) -> Settings {
        Settings {
            direction,
            modulus: modulus.unwrap_or(DEFAULT_MODULUS),
            wrap_window: conf.wrap_window,
            max_delta: conf.max_delta,
        }
    }
}

/// A counter report's totals, as the sensor counts them (before rule 7's swap).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Totals {
    /// ENTRY events since the sensor started, modulo the modulus.
    pub total_in: u32,
    /// EXIT events since the sensor started, modulo the modulus.
    pub total_out: u32,
}

/// One counter report, as the rules need it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CounterReading {
    /// The report's totals.
    pub totals: Totals,
    /// report_type 0x21: the sensor restarted and counts from 0.
    pub restart: bool,
    /// The v2 message counter; `None` for legacy firmware.
    pub message_counter: Option<u16>,
    /// The report's trusted time ([`trusted`](super::time::trusted)).
    pub time: DateTime<Utc>,
}

/// What the storage code keeps per sensor between reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SensorState {
    /// Counter or event, fixed by the first counting report; `None` until then.
    pub mode: Option<Mode>,
    /// The last applied totals (the baseline); `None` before the first counter report.
    pub totals: Option<Totals>,
    /// The last applied v2 message counter.
    pub message_counter: Option<u16>,
    /// The trusted time of the last applied report.
    pub time: Option<DateTime<Utc>>,
    /// Restarts seen (flag or a decrease that is not a wrap).
    pub restarts: u64,
    /// Reports whose delta was above `ingest.max_delta`.
    pub anomalies: u64,
    /// v2 messages that never arrived (gaps in the message counter).
    pub missed_messages: u64,
}

/// How a counter report was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The first report: it sets the baseline and adds nothing (rule 1).
    Baseline,
    /// Older than the last applied report: stored, adds nothing, baseline unchanged (rule 2).
    Late,
    /// The sensor restarted: the deltas are the new totals (rule 3).
    Restart,
    /// At least one total wrapped at the modulus (rule 4).
    Wrap,
    /// Both totals grew or stayed (rule 5).
    Plain,
    /// The sensor counts events: the report is stored, not applied, state unchanged.
    ModeMismatch,
}

/// What one counter report adds, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counted {
    /// Entries and exits to add to the hive (zero when nothing is added).
    pub delta: Delta,
    /// How the report was read.
    pub outcome: Outcome,
    /// The delta that was not added because it was above `ingest.max_delta` (rule 6).
    pub anomaly: Option<Delta>,
    /// v2 messages missed before this one.
    pub missed: u32,
}

impl Counted {
    fn nothing(outcome: Outcome) -> Counted {
        Counted {
            delta: Delta::ZERO,
            outcome,
            anomaly: None,
            missed: 0,
        }
    }
}

/// Applies one counter report to `state` (PROTOCOL.md section 6, rules 1 to 7) and says what it
/// adds to the hive.
pub fn apply_counter(
    state: &mut SensorState,
    reading: &CounterReading,
    settings: &Settings,
) -> Counted {
    if state.mode == Some(Mode::Event) {
        return Counted::nothing(Outcome::ModeMismatch);
    }
    state.mode = Some(Mode::Counter);
    let Some(previous) = state.totals else {
        state.restarts += u64::from(reading.restart);
        move_baseline(state, reading);
        return Counted::nothing(Outcome::Baseline);
    };
    if is_late(state, reading) {
        return Counted::nothing(Outcome::Late);
    }
    let (outcome, raw) = read_change(previous, reading, settings);
    let missed = missed(state.message_counter, reading, outcome);
    state.missed_messages += u64::from(missed);
    state.restarts += u64::from(outcome == Outcome::Restart);
    move_baseline(state, reading);
    let delta = raw.oriented(settings.direction);
    if raw.entries > settings.max_delta || raw.exits > settings.max_delta {
        state.anomalies += 1;
        return Counted {
            delta: Delta::ZERO,
            outcome,
            anomaly: Some(delta),
            missed,
        };
    }
    Counted {
        delta,
        outcome,
        anomaly: None,
        missed,
    }
}

/// Whether a v2 message counter `next` is newer than `last`: 1 to 32767 ahead modulo 65536.
pub fn is_newer(last: u16, next: u16) -> bool {
    (1..=NEWER_WINDOW).contains(&next.wrapping_sub(last))
}

/// Rule 2: a v2 report is late when its message counter is not newer; a legacy report (and a
/// v2 one the counter cannot judge) when its trusted time is older than the last applied one.
fn is_late(state: &SensorState, reading: &CounterReading) -> bool {
    match (state.message_counter, reading.message_counter) {
        (Some(last), Some(next)) if !reading.restart => !is_newer(last, next),
        _ => state.time.is_some_and(|last| reading.time < last),
    }
}

fn move_baseline(state: &mut SensorState, reading: &CounterReading) {
    state.totals = Some(reading.totals);
    state.message_counter = reading.message_counter;
    state.time = Some(reading.time);
}

/// How one total moved from its previous value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Grew(u32),
    Wrapped(u32),
    Fell,
}

/// Rules 3 to 5 for one report: a restart (flag, or either total fell without wrapping) takes
/// the new totals for both; else each total grew or wrapped. The delta is in the sensor's terms.
fn read_change(previous: Totals, reading: &CounterReading, s: &Settings) -> (Outcome, Delta) {
    let new = reading.totals;
    let restarted = Delta {
        entries: new.total_in,
        exits: new.total_out,
    };
    if reading.restart {
        return (Outcome::Restart, restarted);
    }
    match (
        step(previous.total_in, new.total_in, s),
        step(previous.total_out, new.total_out, s),
    ) {
        (Step::Fell, _) | (_, Step::Fell) => (Outcome::Restart, restarted),
        (entries, exits) => {
            let wrapped = matches!(entries, Step::Wrapped(_)) || matches!(exits, Step::Wrapped(_));
            let outcome = if wrapped {
                Outcome::Wrap
            } else {
                Outcome::Plain
            };
            let delta = Delta {
                entries: step_delta(entries),
                exits: step_delta(exits),
            };
            (outcome, delta)
        }
    }
}

fn step(previous: u32, new: u32, s: &Settings) -> Step {
    if new >= previous {
        return Step::Grew(new - previous);
    }
    let to_modulus = s.modulus.saturating_sub(previous);
    if to_modulus <= s.wrap_window && new <= s.wrap_window {
        Step::Wrapped(to_modulus.saturating_add(new))
    } else {
        Step::Fell
    }
}

fn step_delta(step: Step) -> u32 {
    match step {
        Step::Grew(d) | Step::Wrapped(d) => d,
        Step::Fell => 0,
    }
}

/// v2 messages missed before an applied report: a restart explains the gap before it, so only
/// the attempts since its counter's 0 are missing; otherwise the gap in the counter, less one.
fn missed(last: Option<u16>, reading: &CounterReading, outcome: Outcome) -> u32 {
    match (last, reading.message_counter) {
        (_, Some(next)) if outcome == Outcome::Restart => u32::from(next),
        (Some(last), Some(next)) => u32::from(next.wrapping_sub(last).saturating_sub(1)),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_732_300_000 + secs, 0).expect("a valid test time")
    }

    fn settings() -> Settings {
        Settings::new(Direction::Normal, None, &IngestConf::default())
    }

    /// A legacy report of totals (in, out) dated `secs` after the test epoch.
    fn legacy(total_in: u32, total_out: u32, secs: i64) -> CounterReading {
        CounterReading {
            totals: Totals {
                total_in,
                total_out,
            },
            restart: false,
            message_counter: None,
            time: at(secs),
        }
    }

    /// A v2 report of totals (in, out) with message counter `counter`.
    fn v2(total_in: u32, total_out: u32, counter: u16) -> CounterReading {
        CounterReading {
            message_counter: Some(counter),
            ..legacy(total_in, total_out, i64::from(counter))
        }
    }

    fn restart(reading: CounterReading) -> CounterReading {
        CounterReading {
            restart: true,
            ..reading
        }
    }

    fn delta(entries: u32, exits: u32) -> Delta {
        Delta { entries, exits }
    }

    /// Applies `readings` to a new sensor; returns the state and each report's result.
    fn run(s: &Settings, readings: &[CounterReading]) -> (SensorState, Vec<Counted>) {
        let mut state = SensorState::default();
        let counted = readings
            .iter()
            .map(|r| apply_counter(&mut state, r, s))
            .collect();
        (state, counted)
    }

    fn outcomes(counted: &[Counted]) -> Vec<(Delta, Outcome)> {
        counted.iter().map(|c| (c.delta, c.outcome)).collect()
    }

    #[test]
    fn protocol_section_7_sequence() {
        let reports = [
            legacy(65500, 65400, 0),
            legacy(65530, 65420, 60),
            legacy(12, 65500, 120),
            legacy(3, 2, 180),
        ];
        let (state, counted) = run(&settings(), &reports);
        assert_eq!(
            outcomes(&counted),
            [
                (Delta::ZERO, Outcome::Baseline),
                (delta(30, 20), Outcome::Plain),
                (delta(18, 80), Outcome::Wrap),
                (delta(3, 2), Outcome::Restart),
            ]
        );
        assert_eq!((state.restarts, state.anomalies), (1, 0));
        // Report 5, the duplicate, is stopped by storage; were it passed, it would add nothing.
        let mut again = state;
        let dup = apply_counter(&mut again, &reports[3], &settings());
        assert_eq!((dup.delta, again.totals), (Delta::ZERO, state.totals));
    }

    #[test]
    fn a_late_v2_report_is_not_newer_modulo_65536() {
        assert!(is_newer(65535, 0));
        assert!(is_newer(100, 100 + 32767));
        assert!(!is_newer(100, 100 + 32768));
        assert!(!is_newer(100, 100));
        assert!(!is_newer(5, 65530));
        let (state, counted) = run(
            &settings(),
            &[v2(100, 50, 10), v2(120, 60, 12), v2(110, 55, 11)],
        );
        assert_eq!(counted[2].outcome, Outcome::Late);
        assert_eq!(counted[2].delta, Delta::ZERO);
        assert_eq!(state.totals, Some(reports_totals(120, 60)));
        assert_eq!(state.message_counter, Some(12));
        assert_eq!(state.restarts, 0);
    }

    fn reports_totals(total_in: u32, total_out: u32) -> Totals {
        Totals {
            total_in,
            total_out,
        }
    }

    #[test]
    fn a_late_legacy_report_is_older_by_trusted_time() {
        let reports = [
            legacy(100, 50, 0),
            legacy(120, 60, 900),
            legacy(110, 55, 450),
        ];
        let (state, counted) = run(&settings(), &reports);
        assert_eq!(counted[2].outcome, Outcome::Late);
        assert_eq!(state.totals, Some(reports_totals(120, 60)));
        assert_eq!(state.time, Some(at(900)));
        // Same second is not older: it is applied (and adds what it adds).
        let (_, counted) = run(&settings(), &[legacy(100, 50, 0), legacy(101, 50, 0)]);
        assert_eq!(outcomes(&counted)[1], (delta(1, 0), Outcome::Plain));
    }

    #[test]
    fn the_restart_flag_makes_the_totals_the_deltas() {
        let reports = [legacy(100, 50, 0), restart(legacy(130, 70, 60))];
        let (state, counted) = run(&settings(), &reports);
        assert_eq!(outcomes(&counted)[1], (delta(130, 70), Outcome::Restart));
        assert_eq!(state.restarts, 1);
    }

    #[test]
    fn a_decrease_that_is_not_a_wrap_restarts_the_whole_report() {
        // out fell 500 -> 4, far from the modulus; in grew, but is taken whole as well.
        let reports = [legacy(100, 500, 0), legacy(150, 4, 60)];
        let (state, counted) = run(&settings(), &reports);
        assert_eq!(outcomes(&counted)[1], (delta(150, 4), Outcome::Restart));
        assert_eq!(state.restarts, 1);
        // Near the modulus but landing far from 0 is no wrap either.
        let reports = [legacy(65000, 0, 0), legacy(5000, 0, 60)];
        let (_, counted) = run(&settings(), &reports);
        assert_eq!(counted[1].outcome, Outcome::Restart);
    }

    #[test]
    fn a_wrap_near_a_custom_modulus() {
        let s = Settings::new(Direction::Normal, Some(65523), &IngestConf::default());
        let (_, counted) = run(&s, &[legacy(65520, 7, 0), legacy(5, 9, 60)]);
        assert_eq!(outcomes(&counted)[1], (delta(8, 2), Outcome::Wrap));
        // A total beyond the modulus (the setting is wrong) is read as at the modulus.
        let (_, counted) = run(&s, &[legacy(65530, 7, 0), legacy(5, 9, 60)]);
        assert_eq!(outcomes(&counted)[1], (delta(5, 2), Outcome::Wrap));
    }

    #[test]
    fn both_counters_wrap() {
        let (_, counted) = run(&settings(), &[legacy(65530, 65535, 0), legacy(4, 1, 60)]);
        assert_eq!(outcomes(&counted)[1], (delta(10, 2), Outcome::Wrap));
    }

    #[test]
    fn an_anomaly_is_not_added_but_moves_the_baseline() {
        let reports = [
            legacy(100, 50, 0),
            legacy(5200, 60, 60),
            legacy(5210, 65, 120),
        ];
        let (state, counted) = run(&settings(), &reports);
        assert_eq!(counted[1].delta, Delta::ZERO);
        assert_eq!(counted[1].anomaly, Some(delta(5100, 10)));
        assert_eq!(counted[1].outcome, Outcome::Plain);
        assert_eq!(outcomes(&counted)[2], (delta(10, 5), Outcome::Plain));
        assert_eq!(state.anomalies, 1);
        // max_delta itself is not above max_delta.
        let (_, counted) = run(&settings(), &[legacy(0, 0, 0), legacy(5000, 0, 60)]);
        assert_eq!(counted[1].delta, delta(5000, 0));
    }

    #[test]
    fn a_reversed_sensor_swaps_in_and_out() {
        let s = Settings::new(Direction::Reversed, None, &IngestConf::default());
        let (_, counted) = run(&s, &[legacy(10, 20, 0), legacy(13, 27, 60)]);
        assert_eq!(outcomes(&counted)[1], (delta(7, 3), Outcome::Plain));
        let (_, counted) = run(&s, &[legacy(10, 20, 0), restart(legacy(4, 1, 60))]);
        assert_eq!(outcomes(&counted)[1], (delta(1, 4), Outcome::Restart));
    }

    #[test]
    fn missed_messages_are_gaps_in_the_v2_counter() {
        let (state, counted) = run(&settings(), &[v2(0, 0, 5), v2(3, 1, 8)]);
        assert_eq!(counted[1].missed, 2);
        assert_eq!(state.missed_messages, 2);
        // 65535 -> 0 is a wrap of the message counter: nothing missed, no restart.
        let (state, counted) = run(&settings(), &[v2(10, 5, 65535), v2(12, 5, 0)]);
        assert_eq!(outcomes(&counted)[1], (delta(2, 0), Outcome::Plain));
        assert_eq!((state.missed_messages, state.restarts), (0, 0));
        let (_, counted) = run(&settings(), &[v2(10, 5, 65534), v2(12, 5, 1)]);
        assert_eq!(counted[1].missed, 2);
    }

    #[test]
    fn a_v2_restart_explains_the_gap_before_it() {
        // Counter 5000 -> 0 with the flag: not late (the restart reset the counter), no gap.
        let mut reports = [v2(900, 800, 5000), restart(v2(3, 2, 0)), v2(5, 2, 1)];
        reports[1].time = at(6000);
        reports[2].time = at(6060);
        let (state, counted) = run(&settings(), &reports);
        assert_eq!(
            outcomes(&counted)[1..],
            [
                (delta(3, 2), Outcome::Restart),
                (delta(2, 0), Outcome::Plain)
            ]
        );
        assert_eq!((state.missed_messages, state.restarts), (0, 1));
        // Two attempts after the restart were lost: counter 2 on the restart report.
        reports[1].message_counter = Some(2);
        reports[2].message_counter = Some(3);
        let (state, _) = run(&settings(), &reports);
        assert_eq!(state.missed_messages, 2);
        // A replayed restart report older than the last applied one is late.
        let mut old = reports[1];
        old.time = at(0);
        let (state, counted) = run(&settings(), &[reports[0], reports[1], reports[2], old]);
        assert_eq!(counted[3].outcome, Outcome::Late);
        assert_eq!(state.restarts, 1);
    }

    #[test]
    fn a_first_restart_report_is_a_baseline_and_a_restart() {
        let (state, counted) = run(&settings(), &[restart(legacy(0, 0, 0))]);
        assert_eq!(outcomes(&counted), [(Delta::ZERO, Outcome::Baseline)]);
        assert_eq!(state.restarts, 1);
        assert_eq!(state.mode, Some(Mode::Counter));
    }

    fn steps() -> impl Strategy<Value = Vec<(u32, u32)>> {
        prop::collection::vec((0u32..=500, 0u32..=500), 0..50)
    }

    proptest! {
        #[test]
        fn without_wraps_or_restarts_the_deltas_sum_to_the_totals_moved(
            base_in in 0u32..1000,
            base_out in 0u32..1000,
            steps in steps(),
        ) {
            let s = settings();
            let mut state = SensorState::default();
            apply_counter(&mut state, &legacy(base_in, base_out, 0), &s);
            let (mut total_in, mut total_out) = (base_in, base_out);
            let (mut sum_in, mut sum_out) = (0, 0);
            for (i, (step_in, step_out)) in (1..).zip(steps) {
                total_in += step_in;
                total_out += step_out;
                let c = apply_counter(&mut state, &legacy(total_in, total_out, i), &s);
                prop_assert_eq!(c.outcome, Outcome::Plain);
                sum_in += c.delta.entries;
                sum_out += c.delta.exits;
            }
            prop_assert_eq!((sum_in, sum_out), (total_in - base_in, total_out - base_out));
        }

        #[test]
        fn a_late_report_never_changes_the_state(
            totals in (0u32..65536, 0u32..65536, 0u32..65536, 0u32..65536),
            counter in any::<u16>(),
            back in 0u16..=32768,
            earlier in 1i64..1_000_000,
            late in (0u32..65536, 0u32..65536),
        ) {
            let s = settings();
            let first = v2(totals.0, totals.1, counter.wrapping_sub(1));
            let mut state = SensorState::default();
            apply_counter(&mut state, &first, &s);
            apply_counter(&mut state, &v2(totals.2, totals.3, counter), &s);
            let before = state;
            let replay = v2(late.0, late.1, counter.wrapping_sub(back));
            let c = apply_counter(&mut state, &replay, &s);
            prop_assert_eq!((c.outcome, c.delta, state), (Outcome::Late, Delta::ZERO, before));

            let mut legacy_state = SensorState::default();
            apply_counter(&mut legacy_state, &legacy(totals.0, totals.1, 0), &s);
            let before = legacy_state;
            let replay = legacy(late.0, late.1, -earlier);
            let c = apply_counter(&mut legacy_state, &replay, &s);
            prop_assert_eq!((c.outcome, c.delta, legacy_state), (Outcome::Late, Delta::ZERO, before));
        }
    }
}
