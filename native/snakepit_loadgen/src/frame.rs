//! Frames of the batched RPC. [`EncodedBatch`] has the wire format of
//! `TelemetryEventBatch` but holds its events already encoded (template
//! bytes plus timestamp), so a frame costs a few memcpys instead of cloning
//! and encoding every map entry.

use prost::bytes::{Buf, BufMut};
use prost::encoding::{skip_field, uint64, DecodeContext, WireType};
use prost::{DecodeError, Message};
use snakepit_telemetry_core::wire::TelemetryEventBatch;

use crate::generator::{EventPool, Stamped};
use crate::stats::Counts;

/// A `TelemetryEventBatch` ready to send (encode only).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct EncodedBatch {
    /// Entries of field 1 (`events`), each with its key and length.
    events: Vec<u8>,
    totals: [(u32, u64); 6],
}

impl EncodedBatch {
    pub fn new(pool: &EventPool, events: &[Stamped], totals: &Counts) -> EncodedBatch {
        let mut bytes = Vec::with_capacity(events.len() * 256);
        for s in events {
            pool.template(s.template)
                .encode_batch_entry(s.timestamp_ns, &mut bytes);
        }
        EncodedBatch {
            events: bytes,
            totals: totals_fields(totals),
        }
    }
}

/// The same frame as a message (the generated server's path).
pub fn message_batch(pool: &EventPool, events: &[Stamped], totals: &Counts) -> TelemetryEventBatch {
    TelemetryEventBatch {
        events: events.iter().map(|s| pool.event(*s)).collect(),
        dropped_total: totals.dropped,
        emitted_total: totals.emitted,
        sampled_out_total: totals.sampled_out,
        filtered_out_total: totals.filtered,
        disabled_total: totals.disabled,
        source_id: totals.source_id,
        auth_rejected_total: 0,
    }
}

/// `TelemetryEventBatch` field numbers of the running totals and source id.
fn totals_fields(t: &Counts) -> [(u32, u64); 6] {
    [
        (2, t.dropped),
        (3, t.emitted),
        (4, t.sampled_out),
        (5, t.filtered),
        (6, t.disabled),
        (7, t.source_id),
    ]
}

impl Message for EncodedBatch {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        buf.put_slice(&self.events);
        for (tag, value) in &self.totals {
            if *value != 0 {
                uint64::encode(*tag, value, buf);
            }
        }
    }

    /// Never decoded: it only travels server → client. Skips every field.
    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), DecodeError> {
        skip_field(wire_type, tag, buf, ctx)
    }

    fn encoded_len(&self) -> usize {
        let totals: usize = self
            .totals
            .iter()
            .filter(|(_, v)| *v != 0)
            .map(|(tag, v)| uint64::encoded_len(*tag, v))
            .sum();
        self.events.len() + totals
    }

    fn clear(&mut self) {
        *self = EncodedBatch::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generator::now_ns;

    #[test]
    fn encoded_and_message_frames_are_the_same_on_the_wire() {
        let pool = EventPool::build(5);
        let events: Vec<Stamped> = (0..300)
            .map(|template| Stamped {
                template,
                timestamp_ns: now_ns(),
            })
            .collect();
        let totals = Counts {
            emitted: 1000,
            dropped: 7,
            filtered: 3,
            sampled_out: 0,
            disabled: 90,
            sent: 1,
            source_id: 42,
        };
        let fast = EncodedBatch::new(&pool, &events, &totals);
        let bytes = fast.encode_to_vec();
        assert_eq!(bytes.len(), fast.encoded_len());
        let decoded = TelemetryEventBatch::decode(bytes.as_slice()).unwrap();
        assert_eq!(decoded, message_batch(&pool, &events, &totals));
        assert_eq!(decoded.events.len(), 300);
        assert_eq!(
            (
                decoded.emitted_total,
                decoded.dropped_total,
                decoded.disabled_total
            ),
            (1000, 7, 90)
        );
    }

    #[test]
    fn an_empty_frame_is_empty() {
        let frame = EncodedBatch::new(&EventPool::build(1), &[], &Counts::default());
        assert_eq!(frame.encoded_len(), 0);
    }
}
