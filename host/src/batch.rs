//! Building, measuring and cutting the batches handed to plugins.
//!
//! A batch holds payloads of one type in the flat shapes of the WIT
//! contract (`wit/plugin.wit`), which the component model copies in bulk.

use std::ops::Range;

use crate::ingest::{Kind, Value};
use crate::plugin::wit::{Batch, CpuUsageBatch, Instant, JsonBatch};

/// Collects payloads of one type into a [`Batch`].
#[derive(Debug)]
pub struct BatchBuilder {
    batch: Batch,
}

impl BatchBuilder {
    /// An empty batch for payloads of `kind`.
    pub fn new(kind: &Kind) -> BatchBuilder {
        let batch = match kind {
            Kind::LoadAvg => Batch::LoadAvg(Vec::new()),
            Kind::CpuUsage => Batch::CpuUsage(CpuUsageBatch {
                lengths: Vec::new(),
                values: Vec::new(),
            }),
            Kind::LastKernelUpgrade => Batch::LastKernelUpgrade(Vec::new()),
            Kind::Other(name) => Batch::Json(JsonBatch {
                kind: name.to_string(),
                values: Vec::new(),
            }),
        };
        BatchBuilder { batch }
    }

    /// Adds a payload. Returns it back when its value does not belong in
    /// this batch.
    pub fn push(&mut self, value: Value) -> Result<(), Value> {
        match (&mut self.batch, value) {
            (Batch::LoadAvg(loads), Value::LoadAvg(load)) => loads.push(load),
            (Batch::CpuUsage(cpu), Value::CpuUsage(cpus)) => {
                cpu.lengths
                    .push(u32::try_from(cpus.len()).unwrap_or(u32::MAX));
                cpu.values.extend_from_slice(&cpus);
            }
            (Batch::LastKernelUpgrade(times), Value::LastKernelUpgrade(at)) => {
                times.push(Instant {
                    seconds: at.seconds,
                    nanoseconds: at.nanoseconds,
                });
            }
            (Batch::Json(json), Value::Json(text)) => json.values.push(text.into()),
            (_, value) => return Err(value),
        }
        Ok(())
    }

    /// The batch built.
    pub fn finish(self) -> Batch {
        self.batch
    }
}

/// The type name of the payloads of `batch`.
pub fn kind(batch: &Batch) -> &str {
    match batch {
        Batch::LoadAvg(_) => "load_avg",
        Batch::CpuUsage(_) => "cpu_usage",
        Batch::LastKernelUpgrade(_) => "last_kernel_upgrade",
        Batch::Json(json) => &json.kind,
    }
}

/// The number of payloads in `batch`.
pub fn len(batch: &Batch) -> usize {
    match batch {
        Batch::LoadAvg(loads) => loads.len(),
        Batch::CpuUsage(cpu) => cpu.lengths.len(),
        Batch::LastKernelUpgrade(times) => times.len(),
        Batch::Json(json) => json.values.len(),
    }
}

/// The payloads `range` of `batch`, as a batch of their own.
///
/// # Panics
///
/// When `range` reaches past the end of the batch.
pub fn slice(batch: &Batch, range: Range<usize>) -> Batch {
    match batch {
        Batch::LoadAvg(loads) => Batch::LoadAvg(loads[range].to_vec()),
        Batch::CpuUsage(cpu) => {
            let start: usize = cpu.lengths[..range.start].iter().map(|&n| n as usize).sum();
            let lengths = cpu.lengths[range].to_vec();
            let end = start + lengths.iter().map(|&n| n as usize).sum::<usize>();
            Batch::CpuUsage(CpuUsageBatch {
                lengths,
                values: cpu.values[start..end].to_vec(),
            })
        }
        Batch::LastKernelUpgrade(times) => Batch::LastKernelUpgrade(times[range].to_vec()),
        Batch::Json(json) => Batch::Json(JsonBatch {
            kind: json.kind.clone(),
            values: json.values[range].to_vec(),
        }),
    }
}

/// The longest value [`describe`] gives in full, in bytes: a quarantined
/// payload is kept for operators to read, not to keep a large value alive.
pub const DESCRIBE_LIMIT: usize = 1024;

/// The value of payload `index` of `batch` as JSON text, for operators;
/// a value longer than [`DESCRIBE_LIMIT`] is cut there, and says how long
/// it was.
pub fn describe(batch: &Batch, index: usize) -> String {
    if let Batch::Json(json) = batch {
        let text = &json.values[index];
        if text.len() > DESCRIBE_LIMIT {
            let mut end = DESCRIBE_LIMIT;
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            return format!("{}… ({} bytes in all)", &text[..end], text.len());
        }
    }
    match slice(batch, index..index + 1) {
        Batch::LoadAvg(loads) => serde_json::json!(loads[0]).to_string(),
        Batch::CpuUsage(cpu) => serde_json::json!(cpu.values).to_string(),
        Batch::LastKernelUpgrade(times) => {
            format!(
                "{{\"seconds\":{},\"nanoseconds\":{}}}",
                times[0].seconds, times[0].nanoseconds
            )
        }
        Batch::Json(json) => json.values[0].clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::decode::Timestamp;

    #[test]
    fn a_long_value_is_described_cut_with_its_length() {
        let long = format!("\"{}\"", "é".repeat(DESCRIBE_LIMIT));
        let batch = Batch::Json(JsonBatch {
            kind: "disk_usage".to_owned(),
            values: vec!["{}".to_owned(), long.clone()],
        });
        assert_eq!(describe(&batch, 0), "{}");
        let described = describe(&batch, 1);
        let suffix = format!("… ({} bytes in all)", long.len());
        assert!(described.ends_with(&suffix), "{described}");
        assert!(
            described.len() <= DESCRIBE_LIMIT + suffix.len(),
            "{described}"
        );
        assert!(long.starts_with(described.trim_end_matches(&suffix)));
    }

    fn cpu_batch(payloads: &[&[f64]]) -> Batch {
        let mut builder = BatchBuilder::new(&Kind::CpuUsage);
        for cpus in payloads {
            builder
                .push(Value::CpuUsage(cpus.to_vec()))
                .expect("cpu value");
        }
        builder.finish()
    }

    #[test]
    fn cpu_payloads_are_flattened_and_sliced_back() {
        let batch = cpu_batch(&[&[0.1, 0.2], &[0.3], &[0.4, 0.5, 0.6]]);
        assert_eq!(len(&batch), 3);
        assert_eq!(kind(&batch), "cpu_usage");
        let Batch::CpuUsage(middle) = slice(&batch, 1..3) else {
            panic!("not cpu")
        };
        assert_eq!(middle.lengths, vec![1, 3]);
        assert_eq!(middle.values, vec![0.3, 0.4, 0.5, 0.6]);
        assert_eq!(describe(&batch, 2), "[0.4,0.5,0.6]");
        assert_eq!(len(&slice(&batch, 3..3)), 0);
    }

    #[test]
    fn a_value_of_another_type_is_refused() {
        let mut builder = BatchBuilder::new(&Kind::LoadAvg);
        assert_eq!(builder.push(Value::LoadAvg(0.5)), Ok(()));
        assert!(builder.push(Value::CpuUsage(vec![0.5])).is_err());
        let at = Timestamp {
            seconds: 1,
            nanoseconds: 2,
        };
        let mut times = BatchBuilder::new(&Kind::LastKernelUpgrade);
        assert_eq!(times.push(Value::LastKernelUpgrade(at)), Ok(()));
        assert_eq!(
            describe(&times.finish(), 0),
            r#"{"seconds":1,"nanoseconds":2}"#
        );
    }

    #[test]
    fn other_types_travel_as_json_text() {
        let mut builder = BatchBuilder::new(&Kind::from_name("disk_usage"));
        builder
            .push(Value::Json(r#"{"/":0.5}"#.into()))
            .expect("json value");
        let batch = builder.finish();
        assert_eq!(kind(&batch), "disk_usage");
        assert_eq!(describe(&batch, 0), r#"{"/":0.5}"#);
    }
}
