//! Source acknowledgements (SQS message ids) through their life: ingested, covered by a
//! commit, handed to the source to delete, confirmed deleted, and finally forgotten.
//!
//! Each commit carries the `unacknowledged` map (id → time until which it is remembered): 14
//! days while the delete is unconfirmed, a grace period once confirmed, because SQS may still
//! deliver a deleted message again and a restarted consumer must recognise it. Consumers
//! competing for a queue remember each other's messages the same way: 14 days from the commit
//! that covered them, a grace period once a later commit's claims say their delete was
//! confirmed (a message whose delete was lost may wait in a backlog for days before it comes
//! back, and was stored twice once the others had forgotten it after the grace period).

use std::collections::BTreeMap;

use kappa_common::event::SequenceNumber;

/// How long an unconfirmed acknowledgement is remembered: SQS keeps a message at most 14 days.
pub(crate) const UNACKNOWLEDGED_TTL_MS: i64 = 14 * 24 * 3600 * 1000;

#[derive(Debug, Default)]
pub struct AckLedger {
    /// Acknowledgements whose events were all ingested, waiting for the next commit.
    ingested: Vec<String>,
    /// Acknowledgements a commit made durable, for the source to act on.
    committed: Vec<String>,
    /// Every acknowledgement still remembered, with its expiry (ms).
    remembered: BTreeMap<String, i64>,
    /// `remembered` as the last commit wrote it.
    written: BTreeMap<String, i64>,
    /// The ingested messages by the position of their first event (those with events): which
    /// message a row came from, for a competing consumer's claims.
    starts: BTreeMap<SequenceNumber, String>,
    /// Messages other consumers of the queue committed (learnt from their claims), for the
    /// source to delete on sight; and those whose deletes they confirmed, for the source to
    /// forget after the grace period.
    elsewhere: Vec<String>,
    elsewhere_confirmed: Vec<String>,
    /// Messages whose deletes this consumer saw confirmed since its last commit's claims.
    confirmed: Vec<String>,
}

impl AckLedger {
    /// Starts from the last commit's map.
    pub fn new(remembered: BTreeMap<String, i64>) -> AckLedger {
        AckLedger { written: remembered.clone(), remembered, ..AckLedger::default() }
    }

    pub fn add(&mut self, acks: Vec<String>) {
        self.ingested.extend(acks);
    }

    /// Also records where each message's events start (`None`: it has none).
    pub fn add_starts(&mut self, acks: &[String], starts: &[Option<SequenceNumber>]) {
        for (ack, start) in acks.iter().zip(starts) {
            if let Some(start) = start {
                self.starts.insert(*start, ack.clone());
            }
        }
    }

    /// The ingested messages by the position of their first event.
    pub fn starts(&self) -> &BTreeMap<SequenceNumber, String> {
        &self.starts
    }

    /// The ids ingested since the last commit.
    pub fn ingested(&self) -> &[String] {
        &self.ingested
    }

    /// Messages another consumer committed: remembered as this consumer's own are until their
    /// delete is confirmed (SQS may deliver them here too, also days later from a backlog),
    /// and handed to the source to delete on sight.
    pub fn committed_elsewhere(&mut self, acks: impl IntoIterator<Item = String>) {
        let until = chrono::Utc::now().timestamp_millis() + UNACKNOWLEDGED_TTL_MS;
        for ack in acks {
            self.remembered.entry(ack.clone()).or_insert(until);
            self.elsewhere.push(ack);
        }
    }

    /// Messages whose deletes another consumer confirmed: remembered for `grace_ms` more only.
    pub fn confirmed_elsewhere(&mut self, acks: impl IntoIterator<Item = String>, grace_ms: i64) {
        let until = chrono::Utc::now().timestamp_millis() + grace_ms;
        for ack in acks {
            if let Some(expiry) = self.remembered.get_mut(&ack) {
                *expiry = (*expiry).min(until);
            }
            self.elsewhere_confirmed.push(ack);
        }
    }

    pub fn take_elsewhere(&mut self) -> Vec<String> {
        std::mem::take(&mut self.elsewhere)
    }

    pub fn take_elsewhere_confirmed(&mut self) -> Vec<String> {
        std::mem::take(&mut self.elsewhere_confirmed)
    }

    /// The messages whose deletes this consumer saw confirmed since the last call: what its
    /// next commit's claims tell the others.
    pub fn take_confirmed(&mut self) -> Vec<String> {
        std::mem::take(&mut self.confirmed)
    }

    /// Messages that came again although a commit covers them: to be deleted, not ingested.
    pub fn redelivered(&mut self, acks: Vec<String>) {
        self.committed.extend(acks);
    }

    pub fn has_ingested(&self) -> bool {
        !self.ingested.is_empty()
    }

    pub fn take_committed(&mut self) -> Vec<String> {
        std::mem::take(&mut self.committed)
    }

    /// The ids covered by a commit and not yet forgotten.
    pub fn remembered(&self) -> &BTreeMap<String, i64> {
        &self.remembered
    }

    /// The source completed these: remember them for `grace_ms` more only.
    pub fn confirm(&mut self, acks: &[String], grace_ms: i64) {
        let until = chrono::Utc::now().timestamp_millis() + grace_ms;
        for ack in acks {
            if let Some(expiry) = self.remembered.get_mut(ack) {
                *expiry = (*expiry).min(until);
                self.confirmed.push(ack.clone());
            }
        }
    }

    /// Takes over what another generation's last commit still remembers.
    pub fn adopt(&mut self, other: &BTreeMap<String, i64>) {
        for (ack, expiry) in other {
            self.remembered.entry(ack.clone()).or_insert(*expiry);
        }
    }

    /// True when the map differs from what the last commit wrote.
    pub fn changed(&self) -> bool {
        self.remembered != self.written
    }

    /// The map the next commit writes: expired entries dropped, the ingested ones added.
    pub fn for_commit(&self, now_ms: i64) -> BTreeMap<String, i64> {
        let mut map = self.remembered.clone();
        map.retain(|_, expiry_ms| *expiry_ms > now_ms);
        for ack in &self.ingested {
            map.entry(ack.clone()).or_insert(now_ms + UNACKNOWLEDGED_TTL_MS);
        }
        map
    }

    /// The commit carrying `map` is durable: what was ingested may now be acknowledged.
    pub fn committed(&mut self, map: BTreeMap<String, i64>) {
        self.remembered = map.clone();
        self.written = map;
        self.committed.append(&mut self.ingested);
        self.starts.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GRACE_MS: i64 = 320_000;

    /// Issue 60, the SQS window: a message another consumer committed is remembered as long as
    /// one's own (a delete lost, it may come back from a backlog days later), until a later
    /// claim says its delete was confirmed; only then for the grace period.
    #[test]
    fn another_consumers_message_is_remembered_as_ones_own_until_its_delete_is_confirmed() {
        let now = chrono::Utc::now().timestamp_millis();
        let mut ledger = AckLedger::default();
        ledger.committed_elsewhere(["m1".to_string(), "m2".to_string()]);
        assert_eq!(ledger.take_elsewhere(), ["m1", "m2"], "handed to the source to delete on sight");
        for id in ["m1", "m2"] {
            assert!(ledger.remembered()[id] >= now + UNACKNOWLEDGED_TTL_MS, "{id} for 14 days, not the grace period");
        }
        // The other consumer's next claims: m1's delete was confirmed.
        ledger.confirmed_elsewhere(["m1".to_string()], GRACE_MS);
        assert_eq!(ledger.take_elsewhere_confirmed(), ["m1"]);
        assert!(ledger.remembered()["m1"] <= chrono::Utc::now().timestamp_millis() + GRACE_MS);
        assert!(ledger.remembered()["m2"] >= now + UNACKNOWLEDGED_TTL_MS);
        // The next commit carries both, with their expiries.
        let map = ledger.for_commit(chrono::Utc::now().timestamp_millis());
        assert!(map["m1"] < map["m2"]);
    }

    /// What this consumer saw deleted goes into its next claims, once.
    #[test]
    fn confirmed_deletes_are_told_once() {
        let mut ledger = AckLedger::default();
        ledger.add(vec!["own".to_string()]);
        ledger.committed(ledger.for_commit(0));
        assert_eq!(ledger.take_committed(), ["own"]);
        ledger.committed_elsewhere(["theirs".to_string()]);
        ledger.confirm(&["own".to_string(), "theirs".to_string(), "unknown".to_string()], GRACE_MS);
        assert_eq!(ledger.take_confirmed(), ["own", "theirs"]);
        assert!(ledger.take_confirmed().is_empty());
    }
}
