//! From one Kafka message to events and rejects.

use crate::{arrow_ipc, json, Event};

/// The Kafka header that names a message's encoding. Without it the format
/// is recognised from the bytes (Arrow IPC streams start with 0xFFFFFFFF).
pub const CONTENT_TYPE_HEADER: &str = "content-type";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `application/json`: one event.
    Json,
    /// `application/x-ndjson`: one event per line.
    JsonLines,
    /// `application/vnd.apache.arrow.stream`: record batches.
    ArrowIpc,
}

impl Format {
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Json => "application/json",
            Format::JsonLines => "application/x-ndjson",
            Format::ArrowIpc => "application/vnd.apache.arrow.stream",
        }
    }

    fn from_content_type(value: &str) -> Option<Format> {
        // Parameters such as "; charset=utf-8" do not change the format.
        let essence = value.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
        [Format::Json, Format::JsonLines, Format::ArrowIpc]
            .into_iter()
            .find(|f| f.content_type() == essence)
    }
}

/// Where in a message a rejected event was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Position {
    /// The message as a whole could not be read.
    Message,
    /// 1-based line of newline-delimited JSON.
    Line(usize),
    /// 0-based row of the Arrow record batches, counted across batches.
    Row(usize),
}

impl std::fmt::Display for Position {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Position::Message => write!(f, "message"),
            Position::Line(n) => write!(f, "line {n}"),
            Position::Row(n) => write!(f, "row {n}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Reject {
    pub position: Position,
    pub reason: String,
    /// The bytes of the rejected event where they can be cut out of the
    /// message (a JSON line); otherwise the caller keeps the whole message.
    pub bytes: Option<Vec<u8>>,
}

/// What a message held: the valid events and a reject for everything else.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Decoded {
    pub events: Vec<Event>,
    pub rejects: Vec<Reject>,
}

impl Decoded {
    fn whole(reason: String) -> Decoded {
        Decoded {
            events: Vec::new(),
            rejects: vec![Reject { position: Position::Message, reason, bytes: None }],
        }
    }
}

/// Decodes one message. Never panics: every byte string yields events,
/// rejects, or both.
pub fn decode(payload: Option<&[u8]>, content_type: Option<&[u8]>) -> Decoded {
    let payload = match payload {
        Some(p) if !p.is_empty() => p,
        _ => return Decoded::whole("empty message: an event message needs a payload".into()),
    };
    let format = match content_type {
        Some(raw) => {
            let text = String::from_utf8_lossy(raw);
            match Format::from_content_type(&text) {
                Some(f) => f,
                None => {
                    return Decoded::whole(format!(
                        "unsupported {CONTENT_TYPE_HEADER} {text:?}; expected application/json, application/x-ndjson or application/vnd.apache.arrow.stream"
                    ))
                }
            }
        }
        None => sniff(payload),
    };
    match format {
        Format::ArrowIpc => arrow_ipc::decode(payload),
        Format::Json => match json::decode_one(payload) {
            Ok(event) => Decoded { events: vec![event], rejects: Vec::new() },
            Err(reason) => Decoded::whole(reason),
        },
        Format::JsonLines => decode_lines(payload),
    }
}

fn sniff(payload: &[u8]) -> Format {
    if payload.starts_with(&arrow_ipc::CONTINUATION) {
        Format::ArrowIpc
    } else if json::has_trailing_values(payload) {
        Format::JsonLines
    } else {
        Format::Json
    }
}

fn decode_lines(payload: &[u8]) -> Decoded {
    let mut out = Decoded::default();
    for (i, line) in payload.split(|&b| b == b'\n').enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match json::decode_one(line) {
            Ok(event) => out.events.push(event),
            Err(reason) => out.rejects.push(Reject {
                position: Position::Line(i + 1),
                reason,
                bytes: Some(line.to_vec()),
            }),
        }
    }
    if out.events.is_empty() && out.rejects.is_empty() {
        return Decoded::whole("message holds only white space".into());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::tests::sample;

    #[test]
    fn single_json_event_with_and_without_header() {
        let bytes = json::encode(&sample(3));
        for header in
            [None, Some(&b"application/json"[..]), Some(&b"Application/JSON; charset=utf-8"[..])]
        {
            let d = decode(Some(&bytes), header);
            assert_eq!(d.events, vec![sample(3)], "{header:?}");
            assert!(d.rejects.is_empty());
        }
    }

    #[test]
    fn pretty_printed_json_is_one_event() {
        let bytes = serde_json::to_vec_pretty(&sample(4)).unwrap();
        assert_eq!(decode(Some(&bytes), None).events, vec![sample(4)]);
    }

    #[test]
    fn json_lines_keep_good_lines_and_reject_bad_ones_by_line() {
        let mut bytes = json::encode_lines(&[sample(1), sample(2)]);
        bytes.extend_from_slice(b"{\"series\":\"x\"}\n\n");
        bytes.extend_from_slice(b"not json\r\n");
        bytes.extend_from_slice(&json::encode_lines(&[sample(5)]));
        let d = decode(Some(&bytes), None);
        assert_eq!(d.events, vec![sample(1), sample(2), sample(5)]);
        assert_eq!(d.rejects.len(), 2);
        assert_eq!(d.rejects[0].position, Position::Line(3));
        assert!(d.rejects[0].reason.contains("missing field `metric`"), "{}", d.rejects[0].reason);
        assert_eq!(d.rejects[0].bytes.as_deref(), Some(&b"{\"series\":\"x\"}"[..]));
        assert_eq!(d.rejects[1].position, Position::Line(5));
        assert_eq!(d.rejects[1].bytes.as_deref(), Some(&b"not json"[..]));
    }

    #[test]
    fn json_reasons_name_the_field() {
        let cases: &[(&str, &str)] = &[
            (
                r#"{"series":"s","metric":"m","ts":"soon","value":1,"producer":"p","seq":1}"#,
                "field ts: invalid type: string \"soon\"",
            ),
            (
                r#"{"series":"s","metric":"m","ts":1,"value":1,"tags":{"dc":3},"producer":"p","seq":1}"#,
                "field tags.dc: invalid type: integer `3`",
            ),
            (
                r#"{"series":"s","metric":"m","ts":1,"value":1,"producer":"p","seq":-1}"#,
                "field seq: invalid value: integer `-1`",
            ),
            (
                r#"{"series":"s","metric":"m","ts":1,"value":1,"producer":"p","seq":1,"extra":2}"#,
                "unknown field `extra`",
            ),
            (
                r#"{"series":"","metric":"m","ts":1,"value":1,"producer":"p","seq":1}"#,
                "series: is empty",
            ),
            (
                r#"{"series":"s","metric":"m","ts":1,"value":1,"producer":"p"}"#,
                "missing field `seq`",
            ),
            (r#"[1,2]"#, "invalid JSON event"),
        ];
        for (input, expected) in cases {
            let d = decode(Some(input.as_bytes()), Some(b"application/json"));
            assert!(d.events.is_empty(), "{input}");
            assert_eq!(d.rejects.len(), 1);
            assert_eq!(d.rejects[0].position, Position::Message);
            assert!(d.rejects[0].reason.contains(expected), "{input}: {}", d.rejects[0].reason);
        }
    }

    #[test]
    fn empty_unknown_type_and_blank_messages_are_rejected_whole() {
        for (payload, header, expected) in [
            (None, None, "empty message"),
            (Some(&b""[..]), None, "empty message"),
            (Some(&b"{}"[..]), Some(&b"text/csv"[..]), "unsupported content-type \"text/csv\""),
            (Some(&b" \n \n"[..]), Some(&b"application/x-ndjson"[..]), "only white space"),
        ] {
            let d = decode(payload, header);
            assert!(d.events.is_empty());
            assert!(d.rejects[0].reason.contains(expected), "{}", d.rejects[0].reason);
        }
    }

    /// Every prefix and many corruptions of valid messages in every format:
    /// decode returns, and accounts for the input, without panicking.
    #[test]
    fn never_panics_on_mangled_input() {
        let events: Vec<_> = (0..20).map(sample).collect();
        let inputs = [
            json::encode(&events[0]),
            json::encode_lines(&events),
            arrow_ipc::encode(&events).unwrap(),
        ];
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for input in &inputs {
            for cut in 0..input.len() {
                let _ = decode(Some(&input[..cut]), None);
            }
            for _ in 0..2000 {
                let mut mangled = input.clone();
                for _ in 0..1 + next() % 4 {
                    let i = (next() % mangled.len() as u64) as usize;
                    mangled[i] = next() as u8;
                }
                let d = decode(Some(&mangled), None);
                assert!(!d.events.is_empty() || !d.rejects.is_empty());
            }
        }
    }
}
