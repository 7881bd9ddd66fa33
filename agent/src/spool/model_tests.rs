//! A model test of the spool (after Vector's disk buffer model test):
//! random sequences of append (either lane), read oldest, ack, nack,
//! quarantine and reopen (the process dying between two calls) against a
//! plain in-memory model. The unsent batches must be the same, in the same
//! send order, and sequence numbers must grow strictly across reopens.

use proptest::prelude::*;

use super::tests::batch;
use super::*;

#[derive(Debug, Clone)]
enum Op {
    Append {
        readings: usize,
        alarm: bool,
    },
    /// Read the oldest without acting on it (a send that failed: nack).
    Nack,
    /// Read the oldest and remove it (the relay answered 2xx).
    Ack,
    Quarantine,
    /// Drop the spool and open it again with the start-up check.
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0usize..20, any::<bool>()).prop_map(|(readings, alarm)| Op::Append { readings, alarm }),
        2 => Just(Op::Nack),
        3 => Just(Op::Ack),
        1 => Just(Op::Quarantine),
        1 => Just(Op::Reopen),
    ]
}

/// The unsent batches as (lane, seq, readings), in send order.
#[derive(Default)]
struct Model {
    unsent: Vec<(bool, u64, u64)>,
    quarantined: u64,
}

impl Model {
    fn oldest(&self) -> Option<(bool, u64, u64)> {
        let mut all = self.unsent.clone();
        all.sort_by_key(|&(alarm, seq, _)| (!alarm, seq));
        all.first().copied()
    }
    fn remove(&mut self, seq: u64) {
        self.unsent.retain(|&(_, s, _)| s != seq);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    #[test]
    fn spool_behaves_like_the_model(ops in proptest::collection::vec(op(), 1..60)) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spool.db");
        let mut spool = Some(Spool::open(&path).unwrap());
        let mut model = Model::default();
        let mut last_seq = 0u64;
        for op in ops {
            let s = spool.as_mut().unwrap();
            match op {
                Op::Append { readings, alarm } => {
                    let mut b = batch(readings);
                    let seq = if alarm {
                        s.append(&mut b, &[], Lane::Alarms).unwrap()
                    } else {
                        s.append(&mut b, &[], Lane::Readings).unwrap()
                    };
                    prop_assert!(seq > last_seq, "seq {seq} after {last_seq}");
                    last_seq = seq;
                    model.unsent.push((alarm, seq, readings as u64));
                }
                Op::Nack | Op::Ack | Op::Quarantine => {
                    let got = s.oldest().unwrap();
                    let expected = model.oldest();
                    prop_assert_eq!(got.as_ref().map(|b| (b.seq, b.readings)), expected.map(|(_, seq, r)| (seq, r)));
                    if let Some(b) = got {
                        let decoded = edge_wire::decode(&b.body, &Default::default()).unwrap();
                        prop_assert_eq!(decoded.seq, b.seq);
                        match op {
                            Op::Ack => {
                                s.remove(b.seq).unwrap();
                                model.remove(b.seq);
                            }
                            Op::Quarantine => {
                                s.quarantine(b.seq, "model", 0).unwrap();
                                model.remove(b.seq);
                                model.quarantined += 1;
                            }
                            _ => {}
                        }
                    }
                }
                Op::Reopen => {
                    // The spool has no shutdown step: dropping it is what
                    // a crash leaves behind, every commit already durable.
                    drop(spool.take());
                    let (s, report) = Spool::open_checked(&path, SpoolOptions::default(), 1).unwrap();
                    prop_assert_eq!(report, StartupReport::default());
                    spool = Some(s);
                }
            }
            let st = spool.as_ref().unwrap().stats().unwrap();
            prop_assert_eq!(st.batches, model.unsent.len() as u64);
            prop_assert_eq!(st.readings, model.unsent.iter().map(|u| u.2).sum::<u64>());
            prop_assert_eq!(st.quarantined, model.quarantined);
        }
        // Drain: everything left comes out in the model's order.
        let s = spool.as_mut().unwrap();
        while let Some(b) = s.oldest().unwrap() {
            prop_assert_eq!(Some(b.seq), model.oldest().map(|m| m.1));
            s.remove(b.seq).unwrap();
            model.remove(b.seq);
        }
        prop_assert!(model.unsent.is_empty());
    }
}
