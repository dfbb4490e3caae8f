//! JSON encoding: one event per message (`application/json`), or many
//! events, one per line (`application/x-ndjson`).

use crate::Event;

/// One event as a JSON object.
pub fn encode(event: &Event) -> Vec<u8> {
    serde_json::to_vec(event).expect("an Event always serializes")
}

/// Events as newline-delimited JSON, one object per line.
pub fn encode_lines(events: &[Event]) -> Vec<u8> {
    let mut out = Vec::with_capacity(events.len() * 160);
    for event in events {
        serde_json::to_writer(&mut out, event).expect("an Event always serializes");
        out.push(b'\n');
    }
    out
}

/// Parses and validates one JSON object. The error says which field was
/// wrong and how, with serde's line and column.
pub(crate) fn decode_one(bytes: &[u8]) -> Result<Event, String> {
    // Fast path: plain serde. Only a failure is parsed again, with path
    // tracking, to name the field.
    let event: Event = match serde_json::from_slice(bytes) {
        Ok(event) => event,
        Err(_) => return Err(explain(bytes)),
    };
    event.validate().map_err(|e| format!("invalid event: {e}"))?;
    Ok(event)
}

/// The reason `bytes` is not an event, naming the field where serde can.
fn explain(bytes: &[u8]) -> String {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let result: Result<Event, String> = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        // The path names the field ("ts", "tags.dc"); "." means the top level.
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path == "." {
            format!("invalid JSON event: {inner}")
        } else {
            format!("invalid JSON event: field {path}: {inner}")
        }
    });
    match result {
        Err(reason) => reason,
        Ok(_) => match de.end() {
            Err(e) => format!("invalid JSON event: {e}"),
            // Unreachable in practice: plain serde failed on the same bytes.
            Ok(()) => "invalid JSON event".to_owned(),
        },
    }
}

/// Whether `bytes` hold more than one JSON value (newline-delimited JSON),
/// judged by serde's own tokenizer: a first value followed by more input.
pub(crate) fn has_trailing_values(bytes: &[u8]) -> bool {
    let mut values =
        serde_json::Deserializer::from_slice(bytes).into_iter::<serde::de::IgnoredAny>();
    matches!(values.next(), Some(Ok(_))) && values.next().is_some()
}
