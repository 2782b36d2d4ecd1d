//! QoS-1 records kept until the broker acknowledges them.
//!
//! rumqttc keeps unacknowledged packets only for a session the broker resumes; on a new session it
//! clears them, and edge-fer connects with a clean session every time (the outbox, not the
//! broker, is the publisher's memory). So every record stays here until its PUBACK, and after a
//! reconnection everything not acknowledged is sent again. A consumer drops the duplicates by
//! their `seq`.
//!
//! The packet id of a publish is chosen inside rumqttc's event loop; it reports it as an
//! `Outgoing::Publish(pkid)` event, in the order the requests were handed over. Records handed
//! over are therefore matched to packet ids in order ([`Outbox::sent_as`]), and their PUBACKs by
//! id ([`Outbox::acked`]).

use std::collections::VecDeque;

/// One QoS-1 message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Its place in the device's sequence (status messages have none).
    pub seq: Option<u64>,
    /// The full topic.
    pub topic: String,
    /// The JSON payload.
    pub payload: Vec<u8>,
    /// Whether the broker retains it as the topic's last message.
    pub retain: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Not handed to the client yet (or again, after a disconnection).
    Waiting,
    /// Handed to the client; its packet id is not known yet.
    HandedOver,
    /// Sent with this packet id; waiting for its PUBACK.
    Sent(u16),
}

#[derive(Debug)]
struct Entry {
    record: Record,
    state: State,
}

/// A bounded queue of QoS-1 records in production order. Status messages (no `seq`) do not count
/// against the bound and are never dropped for room; a new one replaces an older one of the same
/// topic still waiting (the broker retains only the last anyway).
#[derive(Debug)]
pub struct Outbox {
    entries: VecDeque<Entry>,
    capacity: usize,
}

/// What [`Outbox::push`] had to give up to make room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Overflow {
    /// Nothing: there was room.
    None,
    /// The oldest record not handed over yet was dropped.
    DroppedOldest(Record),
    /// Every record held was already handed over: the new one was dropped.
    DroppedNew(Record),
}

impl Outbox {
    /// An outbox holding at most `capacity` records (at least 1).
    pub fn new(capacity: usize) -> Self {
        Outbox {
            entries: VecDeque::new(),
            capacity: capacity.max(1),
        }
    }

    /// Records held (waiting, handed over or sent).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// The records held, oldest first.
    pub fn records(&self) -> impl Iterator<Item = &Record> {
        self.entries.iter().map(|e| &e.record)
    }

    /// Whether every record has been acknowledged.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Adds `record`; when full, drops the oldest record not yet handed over, which keeps the
    /// in-order matching of packet ids intact (a record handed over must stay until its id is
    /// known).
    pub fn push(&mut self, record: Record) -> Overflow {
        let mut overflow = Overflow::None;
        if record.seq.is_none() {
            self.entries.retain(|e| {
                !(e.state == State::Waiting
                    && e.record.seq.is_none()
                    && e.record.topic == record.topic)
            });
        } else if self
            .entries
            .iter()
            .filter(|e| e.record.seq.is_some())
            .count()
            >= self.capacity
        {
            let oldest = self
                .entries
                .iter()
                .position(|e| e.state == State::Waiting && e.record.seq.is_some());
            match oldest {
                Some(at) => {
                    let dropped = self.entries.remove(at).map(|e| e.record);
                    overflow = dropped.map_or(Overflow::None, Overflow::DroppedOldest);
                }
                None => return Overflow::DroppedNew(record),
            }
        }
        self.entries.push_back(Entry {
            record,
            state: State::Waiting,
        });
        overflow
    }

    /// Offers the waiting records, oldest first, to `take` (which says whether the client took
    /// it) while fewer than `window` are in flight. Returns how many were handed over.
    pub fn hand_over(&mut self, window: usize, mut take: impl FnMut(&Record) -> bool) -> usize {
        let mut in_flight = self
            .entries
            .iter()
            .filter(|e| e.state != State::Waiting)
            .count();
        let mut handed = 0;
        for entry in self.entries.iter_mut() {
            if in_flight >= window {
                break;
            }
            if entry.state != State::Waiting {
                continue;
            }
            if !take(&entry.record) {
                break; // The client's queue is full; the rest wait for the next call.
            }
            entry.state = State::HandedOver;
            in_flight += 1;
            handed += 1;
        }
        handed
    }

    /// The event loop sent the oldest record handed over as packet `pkid`.
    pub fn sent_as(&mut self, pkid: u16) {
        if let Some(entry) = self
            .entries
            .iter_mut()
            .find(|e| e.state == State::HandedOver)
        {
            entry.state = State::Sent(pkid);
        }
    }

    /// The broker acknowledged packet `pkid`: its record is done. Returns it.
    pub fn acked(&mut self, pkid: u16) -> Option<Record> {
        let at = self
            .entries
            .iter()
            .position(|e| e.state == State::Sent(pkid))?;
        self.entries.remove(at).map(|e| e.record)
    }

    /// The connection was lost: everything not acknowledged is sent again on the next one.
    pub fn requeue(&mut self) {
        for entry in &mut self.entries {
            entry.state = State::Waiting;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(seq: u64) -> Record {
        Record {
            seq: Some(seq),
            topic: "t".into(),
            payload: seq.to_string().into_bytes(),
            retain: false,
        }
    }

    fn seqs(outbox: &mut Outbox, window: usize) -> Vec<u64> {
        let mut taken = Vec::new();
        outbox.hand_over(window, |r| {
            taken.push(r.seq.unwrap());
            true
        });
        taken
    }

    #[test]
    fn records_are_handed_over_in_order_within_the_window_and_leave_on_their_ack() {
        let mut outbox = Outbox::new(10);
        for seq in 1..=5 {
            assert_eq!(outbox.push(record(seq)), Overflow::None);
        }
        assert_eq!(seqs(&mut outbox, 3), [1, 2, 3]);
        assert_eq!(seqs(&mut outbox, 3), Vec::<u64>::new(), "window full");
        outbox.sent_as(7);
        outbox.sent_as(8);
        outbox.sent_as(9);
        // Acks by packet id, in any order.
        assert_eq!(outbox.acked(8).unwrap().seq, Some(2));
        assert_eq!(outbox.acked(8), None, "a second ack for the same id");
        assert_eq!(seqs(&mut outbox, 3), [4]);
        assert_eq!(outbox.len(), 4);
    }

    #[test]
    fn a_lost_connection_sends_everything_unacknowledged_again() {
        let mut outbox = Outbox::new(10);
        for seq in 1..=4 {
            outbox.push(record(seq));
        }
        assert_eq!(seqs(&mut outbox, 10), [1, 2, 3, 4]);
        outbox.sent_as(1);
        outbox.sent_as(2);
        assert!(outbox.acked(1).is_some());
        outbox.requeue();
        // 2 was sent but not acked, 3 and 4 handed over but never sent: all go again, in order.
        assert_eq!(seqs(&mut outbox, 10), [2, 3, 4]);
        // Old packet ids mean nothing after a requeue.
        assert_eq!(outbox.acked(2), None);
        outbox.sent_as(5);
        assert_eq!(outbox.acked(5).unwrap().seq, Some(2));
    }

    #[test]
    fn status_messages_take_no_room_and_the_newest_replaces_a_waiting_one() {
        let status = |payload: &str| Record {
            seq: None,
            topic: "s".into(),
            payload: payload.into(),
            retain: true,
        };
        let mut outbox = Outbox::new(1);
        outbox.push(status("online"));
        assert_eq!(outbox.push(record(1)), Overflow::None);
        assert_eq!(outbox.push(status("offline")), Overflow::None);
        let payloads: Vec<&[u8]> = outbox.records().map(|r| r.payload.as_slice()).collect();
        assert_eq!(payloads, [b"1".as_slice(), b"offline"]);
        assert_eq!(outbox.push(record(2)), Overflow::DroppedOldest(record(1)));
    }

    #[test]
    fn a_full_outbox_drops_the_oldest_waiting_record_never_one_being_matched() {
        let mut outbox = Outbox::new(3);
        for seq in 1..=3 {
            outbox.push(record(seq));
        }
        assert_eq!(seqs(&mut outbox, 1), [1]);
        // 1 is handed over: 2 is the oldest waiting.
        assert_eq!(outbox.push(record(4)), Overflow::DroppedOldest(record(2)));
        assert_eq!(outbox.len(), 3);
        // All handed over: the new record is the one dropped.
        assert_eq!(seqs(&mut outbox, 10), [3, 4]);
        assert_eq!(outbox.push(record(5)), Overflow::DroppedNew(record(5)));
        // The client refusing a record stops the hand-over there.
        outbox.requeue();
        let mut offered = 0;
        assert_eq!(
            outbox.hand_over(10, |_| {
                offered += 1;
                offered < 2
            }),
            1
        );
    }
}
