//! Apache Arrow IPC stream encoding (`application/vnd.apache.arrow.stream`):
//! many events per message, the fast path. The columns, by name:
//!
//! | column   | type (accepted)                                                 | nulls |
//! |----------|-----------------------------------------------------------------|-------|
//! | series   | Utf8 (also LargeUtf8, Utf8View, Dictionary of Utf8)             | no    |
//! | metric   | as series                                                       | no    |
//! | ts       | Timestamp, any unit (converted to ms); or Int64 ms since epoch  | no    |
//! | value    | Float64 (also Float32 and integers)                             | no    |
//! | producer | as series                                                       | no    |
//! | seq      | UInt64 (also Int64, UInt32, Int32; negatives rejected)          | no    |
//! | tags     | Map<Utf8, Utf8>, optional column                                | yes   |
//!
//! Other columns are ignored. [`encode`] writes exactly the first type of
//! each row of the table.

use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, Float64Array, Int64Array, MapBuilder, RecordBatch, StringArray,
    StringBuilder, TimestampMillisecondArray, UInt64Array,
};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use arrow::error::ArrowError;
use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::StreamWriter;

use crate::decode::{Decoded, Position, Reject};
use crate::Event;

/// Every IPC stream message starts with this continuation marker.
pub(crate) const CONTINUATION: [u8; 4] = [0xff, 0xff, 0xff, 0xff];

/// The schema [`encode`] writes.
pub fn schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new("series", DataType::Utf8, false),
        Field::new("metric", DataType::Utf8, false),
        Field::new("ts", DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())), false),
        Field::new("value", DataType::Float64, false),
        Field::new("producer", DataType::Utf8, false),
        Field::new("seq", DataType::UInt64, false),
        Field::new_map(
            "tags",
            "entries",
            Field::new("key", DataType::Utf8, false),
            Field::new("value", DataType::Utf8, true),
            false,
            true,
        ),
    ]))
}

/// The events as one record batch.
pub fn record_batch(events: &[Event]) -> Result<RecordBatch, ArrowError> {
    let mut tags = MapBuilder::new(None, StringBuilder::new(), StringBuilder::new());
    for event in events {
        for (k, v) in &event.tags {
            tags.keys().append_value(k);
            tags.values().append_value(v);
        }
        tags.append(true)?;
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(events.iter().map(|e| e.series.as_str()))),
        Arc::new(StringArray::from_iter_values(events.iter().map(|e| e.metric.as_str()))),
        Arc::new(
            TimestampMillisecondArray::from_iter_values(events.iter().map(|e| e.ts))
                .with_timezone("UTC"),
        ),
        Arc::new(Float64Array::from_iter_values(events.iter().map(|e| e.value))),
        Arc::new(StringArray::from_iter_values(events.iter().map(|e| e.producer.as_str()))),
        Arc::new(UInt64Array::from_iter_values(events.iter().map(|e| e.seq))),
        Arc::new(tags.finish()),
    ];
    RecordBatch::try_new(schema(), columns)
}

/// The events as an IPC stream holding one record batch.
pub fn encode(events: &[Event]) -> Result<Vec<u8>, ArrowError> {
    let batch = record_batch(events)?;
    let mut writer = StreamWriter::try_new(Vec::new(), &batch.schema())?;
    writer.write(&batch)?;
    writer.finish()?;
    writer.into_inner()
}

/// Decodes an IPC stream. Rows with a null or invalid value are rejected one
/// by one; a stream that cannot be read, or has no usable schema, is
/// rejected whole (rows of batches read before a corrupt one are kept).
pub(crate) fn decode(payload: &[u8]) -> Decoded {
    // arrow-ipc 60 panics on some corrupt streams (buffer alignment and
    // offset assertions; the never_panics test hits them): a poison message
    // must not take a worker down. This relies on panic = "unwind", the
    // default; the workspace must not set panic = "abort".
    match catch_unwind(AssertUnwindSafe(|| decode_stream(payload))) {
        Ok(decoded) => decoded,
        Err(panic) => {
            let what = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("unknown");
            Decoded {
                events: Vec::new(),
                rejects: vec![message_reject(format!(
                    "malformed Arrow IPC stream (the reader failed: {what})"
                ))],
            }
        }
    }
}

fn message_reject(reason: String) -> Reject {
    Reject { position: Position::Message, reason, bytes: None }
}

fn decode_stream(payload: &[u8]) -> Decoded {
    let mut out = Decoded::default();
    let reader = match StreamReader::try_new(payload, None) {
        Ok(r) => r,
        Err(e) => {
            out.rejects.push(message_reject(format!("malformed Arrow IPC stream: {e}")));
            return out;
        }
    };
    let mut row_base = 0;
    for batch in reader {
        let batch = match batch {
            Ok(b) => b,
            Err(e) => {
                out.rejects.push(message_reject(format!(
                    "malformed Arrow IPC stream after {row_base} rows: {e}"
                )));
                return out;
            }
        };
        let columns = match Columns::from_batch(&batch) {
            Ok(c) => c,
            Err(reason) => {
                out.rejects.push(message_reject(reason));
                return out;
            }
        };
        out.events.reserve(batch.num_rows());
        for row in 0..batch.num_rows() {
            match columns.event(row) {
                Ok(event) => out.events.push(event),
                Err(reason) => out.rejects.push(Reject {
                    position: Position::Row(row_base + row),
                    reason,
                    bytes: None,
                }),
            }
        }
        row_base += batch.num_rows();
    }
    if out.events.is_empty() && out.rejects.is_empty() {
        out.rejects.push(message_reject("Arrow IPC stream holds no rows".into()));
    }
    out
}

/// A batch's columns in canonical types.
struct Columns {
    series: StringArray,
    metric: StringArray,
    ts: Int64Array,
    value: Float64Array,
    producer: StringArray,
    seq: UInt64Array,
    /// Present when the column is: entries per row, keys, values.
    tags: Option<Tags>,
}

/// A Map<Utf8, Utf8> column, cast once per batch (not once per row).
struct Tags {
    map: arrow::array::MapArray,
    keys: StringArray,
    values: StringArray,
}

fn column<'a>(batch: &'a RecordBatch, name: &str) -> Result<&'a ArrayRef, String> {
    batch
        .column_by_name(name)
        .ok_or_else(|| format!("Arrow schema has no column {name:?}; required: series, metric, ts, value, producer, seq"))
}

fn is_text(t: &DataType) -> bool {
    match t {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => true,
        DataType::Dictionary(_, v) => is_text(v),
        _ => false,
    }
}

fn to_type(name: &str, array: &ArrayRef, to: &DataType) -> Result<ArrayRef, String> {
    cast(array, to)
        .map_err(|e| format!("column {name:?}: cannot read {} as {to}: {e}", array.data_type()))
}

fn text(batch: &RecordBatch, name: &str) -> Result<StringArray, String> {
    let array = column(batch, name)?;
    if !is_text(array.data_type()) {
        return Err(format!("column {name:?} has type {}; expected Utf8", array.data_type()));
    }
    Ok(to_type(name, array, &DataType::Utf8)?.as_string::<i32>().clone())
}

impl Columns {
    fn from_batch(batch: &RecordBatch) -> Result<Columns, String> {
        let ts = column(batch, "ts")?;
        let ts = match ts.data_type() {
            DataType::Timestamp(_, _) => {
                let ms = to_type("ts", ts, &DataType::Timestamp(TimeUnit::Millisecond, None))?;
                to_type("ts", &ms, &DataType::Int64)?
            }
            DataType::Int64 => ts.clone(),
            other => {
                return Err(format!(
                    "column \"ts\" has type {other}; expected Timestamp or Int64 (ms since epoch)"
                ))
            }
        };
        let value = column(batch, "value")?;
        if !value.data_type().is_numeric() {
            return Err(format!(
                "column \"value\" has type {}; expected Float64",
                value.data_type()
            ));
        }
        let seq = column(batch, "seq")?;
        if !matches!(
            seq.data_type(),
            DataType::UInt64 | DataType::Int64 | DataType::UInt32 | DataType::Int32
        ) {
            return Err(format!("column \"seq\" has type {}; expected UInt64", seq.data_type()));
        }
        let tags = match batch.column_by_name("tags") {
            None => None,
            Some(t) => match t.data_type() {
                DataType::Map(entries, _) => match entries.data_type() {
                    DataType::Struct(fields)
                        if fields.len() == 2
                            && is_text(fields[0].data_type())
                            && is_text(fields[1].data_type()) =>
                    {
                        let map = t.as_map().clone();
                        let keys = to_type("tags", map.keys(), &DataType::Utf8)?
                            .as_string::<i32>()
                            .clone();
                        let values = to_type("tags", map.values(), &DataType::Utf8)?
                            .as_string::<i32>()
                            .clone();
                        Some(Tags { map, keys, values })
                    }
                    _ => {
                        return Err(format!(
                            "column \"tags\" has type {}; expected Map<Utf8, Utf8>",
                            t.data_type()
                        ))
                    }
                },
                other => {
                    return Err(format!(
                        "column \"tags\" has type {other}; expected Map<Utf8, Utf8>"
                    ))
                }
            },
        };
        Ok(Columns {
            series: text(batch, "series")?,
            metric: text(batch, "metric")?,
            ts: ts.as_primitive().clone(),
            value: to_type("value", value, &DataType::Float64)?.as_primitive().clone(),
            producer: text(batch, "producer")?,
            // A negative or out-of-range number becomes null here, then a row reject.
            seq: to_type("seq", seq, &DataType::UInt64)?.as_primitive().clone(),
            tags,
        })
    }

    fn event(&self, row: usize) -> Result<Event, String> {
        let null = |name: &str| format!("{name} is null");
        let series = if self.series.is_null(row) {
            return Err(null("series"));
        } else {
            self.series.value(row)
        };
        let metric = if self.metric.is_null(row) {
            return Err(null("metric"));
        } else {
            self.metric.value(row)
        };
        let producer = if self.producer.is_null(row) {
            return Err(null("producer"));
        } else {
            self.producer.value(row)
        };
        if self.ts.is_null(row) {
            return Err(null("ts"));
        }
        if self.value.is_null(row) {
            return Err(null("value"));
        }
        if self.seq.is_null(row) {
            return Err("seq is null, negative or not a whole number".into());
        }
        let mut tags = BTreeMap::new();
        if let Some(Tags { map, keys, values }) = &self.tags {
            if map.is_valid(row) {
                let offsets = map.value_offsets();
                for i in offsets[row] as usize..offsets[row + 1] as usize {
                    if keys.is_valid(i) && values.is_valid(i) {
                        tags.insert(keys.value(i).to_owned(), values.value(i).to_owned());
                    }
                }
            }
        }
        let event = Event {
            series: series.to_owned(),
            metric: metric.to_owned(),
            ts: self.ts.value(row),
            value: self.value.value(row),
            tags,
            producer: producer.to_owned(),
            seq: self.seq.value(row),
        };
        event.validate().map_err(|e| format!("invalid event: {e}"))?;
        Ok(event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::tests::sample;
    use crate::{decode as decode_message, Position};
    use arrow::array::{Int32Array, StringDictionaryBuilder, TimestampMicrosecondArray};
    use arrow::datatypes::Int32Type;

    fn ipc(batches: &[RecordBatch]) -> Vec<u8> {
        let mut w = StreamWriter::try_new(Vec::new(), &batches[0].schema()).unwrap();
        for b in batches {
            w.write(b).unwrap();
        }
        w.finish().unwrap();
        w.into_inner().unwrap()
    }

    #[test]
    fn round_trip_with_and_without_header() {
        let events: Vec<_> = (0..100).map(sample).collect();
        let bytes = encode(&events).unwrap();
        assert!(bytes.starts_with(&CONTINUATION));
        for header in [None, Some(&b"application/vnd.apache.arrow.stream"[..])] {
            let d = decode_message(Some(&bytes), header);
            assert!(d.rejects.is_empty(), "{:?}", d.rejects);
            assert_eq!(d.events, events);
        }
    }

    #[test]
    fn several_batches_count_rows_across_batches() {
        let mut bad = sample(12);
        bad.series.clear();
        let a = record_batch(&[sample(10), sample(11)]).unwrap();
        let b = record_batch(&[bad, sample(13)]).unwrap();
        let d = decode(&ipc(&[a, b]));
        assert_eq!(d.events, vec![sample(10), sample(11), sample(13)]);
        assert_eq!(d.rejects.len(), 1);
        assert_eq!(d.rejects[0].position, Position::Row(2));
        assert_eq!(d.rejects[0].reason, "invalid event: series: is empty");
    }

    #[test]
    fn tags_of_each_row_are_its_own() {
        // 0, 2 and 1 tags, then a null map and a null value (both skipped).
        let mut events: Vec<_> = (0..3).map(sample).collect();
        events[0].tags.clear();
        events[1].tags.insert("az".into(), "b".into());
        let mut d = decode(&encode(&events).unwrap());
        assert_eq!(d.events, events);
        let mut tags = MapBuilder::new(None, StringBuilder::new(), StringBuilder::new());
        tags.append(false).unwrap();
        tags.keys().append_value("k");
        tags.values().append_null();
        tags.keys().append_value("dc");
        tags.values().append_value("us-2");
        tags.append(true).unwrap();
        let base = record_batch(&[sample(7), sample(8)]).unwrap();
        let mut columns = base.columns().to_vec();
        columns[6] = Arc::new(tags.finish());
        let batch = RecordBatch::try_new(base.schema(), columns).unwrap();
        d = decode(&ipc(&[batch]));
        assert!(d.rejects.is_empty(), "{:?}", d.rejects);
        assert!(d.events[0].tags.is_empty());
        assert_eq!(d.events[1].tags, BTreeMap::from([("dc".to_owned(), "us-2".to_owned())]));
    }

    #[test]
    fn accepts_other_physical_types() {
        // Dictionary strings, microsecond timestamps, Int32 seq, no tags column.
        let mut series = StringDictionaryBuilder::<Int32Type>::new();
        series.append_value("host-1");
        series.append_value("host-1");
        let schema = Schema::new(vec![
            Field::new("series", series.finish().data_type().clone(), false),
            Field::new("metric", DataType::Utf8, false),
            Field::new("ts", DataType::Timestamp(TimeUnit::Microsecond, None), false),
            Field::new("value", DataType::Float64, false),
            Field::new("producer", DataType::Utf8, false),
            Field::new("seq", DataType::Int32, true),
        ]);
        let mut series = StringDictionaryBuilder::<Int32Type>::new();
        series.append_value("host-1");
        series.append_value("host-1");
        let batch = RecordBatch::try_new(
            Arc::new(schema),
            vec![
                Arc::new(series.finish()),
                Arc::new(StringArray::from(vec!["m", "m"])),
                Arc::new(TimestampMicrosecondArray::from(vec![5_000_000, 6_000_000])),
                Arc::new(Float64Array::from(vec![1.0, 2.0])),
                Arc::new(StringArray::from(vec!["p", "p"])),
                Arc::new(Int32Array::from(vec![Some(1), Some(-2)])),
            ],
        )
        .unwrap();
        let d = decode(&ipc(&[batch]));
        assert_eq!(d.events.len(), 1);
        assert_eq!(d.events[0].ts, 5_000);
        assert!(d.events[0].tags.is_empty());
        assert_eq!(d.rejects[0].position, Position::Row(1));
        assert!(d.rejects[0].reason.contains("seq is null, negative"), "{}", d.rejects[0].reason);
    }

    #[test]
    fn schema_problems_reject_the_message_and_name_the_column() {
        let schema = Schema::new(vec![
            Field::new("series", DataType::Utf8, false),
            Field::new("metric", DataType::Utf8, false),
            Field::new("ts", DataType::Utf8, false),
        ]);
        let batch = RecordBatch::try_new(
            Arc::new(schema),
            vec![
                Arc::new(StringArray::from(vec!["s"])),
                Arc::new(StringArray::from(vec!["m"])),
                Arc::new(StringArray::from(vec!["yesterday"])),
            ],
        )
        .unwrap();
        let d = decode(&ipc(&[batch]));
        assert!(d.events.is_empty());
        assert_eq!(d.rejects[0].position, Position::Message);
        assert!(
            d.rejects[0].reason.contains("column \"ts\" has type Utf8"),
            "{}",
            d.rejects[0].reason
        );

        let missing = record_batch(&[sample(1)]).unwrap().project(&[0, 1, 2, 3, 4]).unwrap();
        let d = decode(&ipc(&[missing]));
        assert!(d.rejects[0].reason.contains("no column \"seq\""), "{}", d.rejects[0].reason);
    }

    #[test]
    fn garbage_after_the_marker_is_a_message_reject() {
        let d = decode_message(Some(&[0xff, 0xff, 0xff, 0xff, 1, 2, 3]), None);
        assert!(d.events.is_empty());
        assert!(
            d.rejects[0].reason.starts_with("malformed Arrow IPC stream"),
            "{}",
            d.rejects[0].reason
        );
    }
}
