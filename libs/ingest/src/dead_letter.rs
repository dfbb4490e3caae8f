//! Dead letters: events herd could not decode or store. Each goes to the
//! dead-letter topic before its source offset is committed, so none is lost.
//!
//! The record's payload is the original bytes (the rejected JSON line, or the
//! whole message) for decode failures, and the event as JSON for write
//! failures. Headers say where it came from and why:
//!
//! | header                | value                                  |
//! |-----------------------|----------------------------------------|
//! | herd.source.topic     | topic of the original message          |
//! | herd.source.partition | its partition                          |
//! | herd.source.offset    | its offset                             |
//! | herd.error.stage      | `decode` or `write`                    |
//! | herd.error.position   | `message`, `line N`, `row N` or `event` |
//! | herd.error.reason     | what was wrong                         |
//! | herd.worker           | the worker that rejected it            |
//! | content-type          | the original content type, if any      |

use crate::chunk::SourcePosition;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Decode,
    Write,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Decode => "decode",
            Stage::Write => "write",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter {
    pub source: SourcePosition,
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
    pub content_type: Option<String>,
    pub stage: Stage,
    pub position: String,
    pub reason: String,
}

impl DeadLetter {
    pub fn headers(&self, worker: &str) -> Vec<(&'static str, String)> {
        let mut h = vec![
            ("herd.source.topic", self.source.topic.to_string()),
            ("herd.source.partition", self.source.partition.to_string()),
            ("herd.source.offset", self.source.offset.to_string()),
            ("herd.error.stage", self.stage.as_str().to_owned()),
            ("herd.error.position", self.position.clone()),
            ("herd.error.reason", self.reason.clone()),
            ("herd.worker", worker.to_owned()),
        ];
        if let Some(ct) = &self.content_type {
            h.push((herd_model::CONTENT_TYPE_HEADER, ct.clone()));
        }
        h
    }
}
