//! The `[ingest]` section: how sensor reports are checked (clock skew, counter wraps and
//! deltas, duplicates), for the ingest module; this file only parses and checks it.

use serde::{Deserialize, Serialize};

use crate::core::config::{at_least, between, Dur, Invalid, KeyPath, Section};

/// The largest `ingest.max_batch`: half of what the hook holds uncommitted
/// ([`super::hook::MAX_QUEUED`]).
pub const MAX_BATCH_LIMIT: usize = 10_000;

/// The `[ingest]` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestConf {
    /// Largest accepted difference between a sensor's clock and ours.
    pub max_clock_skew: Dur,
    /// How near the modulus (and 0) counters must be to count as a wrap.
    pub wrap_window: u32,
    /// A larger delta in one report is recorded as an anomaly.
    pub max_delta: u32,
    /// An identical payload of a sensor and topic within this of its first copy is a duplicate.
    pub dedupe_window: Dur,
    /// Most reports the ingest hook hands the writer as one transaction; 1 stores each report
    /// in a transaction of its own (what batching saves, for a benchmark).
    pub max_batch: usize,
}

impl Default for IngestConf {
    fn default() -> IngestConf {
        IngestConf {
            max_clock_skew: Dur::secs(600),
            wrap_window: 4096,
            max_delta: 5000,
            dedupe_window: Dur::secs(24 * 60 * 60),
            max_batch: 1000,
        }
    }
}

impl Section for IngestConf {
    const NAME: &'static str = "ingest";

    /// Checks the skew, the counter limits, the duplicate window and the batch size.
    fn validate(&self) -> Result<(), Invalid> {
        let at = KeyPath::root(Self::NAME);
        at_least(self.max_clock_skew, Dur::secs(1), &at.key("max_clock_skew"))?;
        // A wrap must be told apart from a decrease: the window stays under half the modulus.
        between(self.wrap_window, 1, 32767, &at.key("wrap_window"))?;
        at_least(self.max_delta, 1, &at.key("max_delta"))?;
        at_least(self.dedupe_window, Dur::secs(1), &at.key("dedupe_window"))?;
        // Half the hook's queue at most, so a full batch never waits for the queue to empty.
        between(self.max_batch, 1, MAX_BATCH_LIMIT, &at.key("max_batch"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::config::Conf;

    fn err(text: &str) -> String {
        match Conf::parse_only::<IngestConf>(text) {
            Ok(_) => panic!("accepted:\n{text}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn errors_name_file_line_and_key() {
        let e = err("[ingest]\nwrap_window = 0\n");
        assert_eq!(
            e,
            "conf/x.toml:2: ingest.wrap_window: must be between 1 and 32767, not 0"
        );
        let e = err("[ingest]\nmax_clock_skew = \"0s\"\n");
        assert_eq!(
            e,
            "conf/x.toml:2: ingest.max_clock_skew: must be at least 1s, not 0s"
        );
        let e = err("[ingest]\ndedupe_window = \"0s\"\n");
        assert_eq!(
            e,
            "conf/x.toml:2: ingest.dedupe_window: must be at least 1s, not 0s"
        );
        let e = err("[ingest]\nmax_batch = 0\n");
        assert_eq!(
            e,
            "conf/x.toml:2: ingest.max_batch: must be between 1 and 10000, not 0"
        );
    }
}
