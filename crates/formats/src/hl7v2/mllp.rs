//! MLLP framing (HL7 Minimal Lower Layer Protocol) as a pure codec: a frame is `0x0B`, the message,
//! `0x1C 0x0D`. The decoder takes byte chunks as they arrive and yields whole frames; memory is bounded
//! by the frame limit, whatever the peer sends.
//!
//! Tolerated: white space between frames (skipped silently); a missing `0x0D` after `0x1C` (the frame
//! ends at `0x1C`; the byte after it is read as the start of what follows). Reported and skipped:
//! other bytes between frames (`Garbage`), a frame over the limit (`FrameTooLarge`, discarded up to
//! its end), a frame cut by a new `0x0B` (`Interrupted`), and at the end of the stream an unfinished
//! frame (`Incomplete`). After any error the decoder goes on with the next frame.

use std::collections::VecDeque;

/// Start block.
pub const START: u8 = 0x0B;
/// End block.
pub const END: u8 = 0x1C;
/// Carriage return after the end block.
pub const CR: u8 = 0x0D;
/// The default frame limit: 4 MiB (a lab message with analyser histograms is a few hundred KiB).
pub const DEFAULT_MAX_FRAME_BYTES: usize = 4 * 1024 * 1024;
/// How much of an oversized frame is kept so the receiver can still read its MSH and answer `AR`.
pub const HEAD_BYTES: usize = 1024;

/// Wraps a message in a frame.
pub fn frame(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + 3);
    out.push(START);
    out.extend_from_slice(message);
    out.push(END);
    out.push(CR);
    out
}

/// What went wrong on the byte stream. None of these stop the decoder.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MllpError {
    #[error("{bytes} bytes outside any MLLP frame were skipped")]
    Garbage { bytes: usize },
    #[error("an MLLP frame exceeded the {limit}-byte limit and was discarded")]
    FrameTooLarge {
        limit: usize,
        /// The frame's first bytes (at most `HEAD_BYTES`, and at most the limit), for
        /// `MessageHeader::sniff`.
        head: Vec<u8>,
    },
    #[error("an MLLP frame was cut by a new start block after {bytes} bytes and was discarded")]
    Interrupted { bytes: usize },
    #[error("the stream ended inside an MLLP frame ({bytes} bytes unfinished)")]
    Incomplete { bytes: usize },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Between frames.
    Idle,
    /// Inside a frame.
    InFrame,
    /// Just after an end block: a CR here is the frame's last byte.
    AfterEnd,
    /// Inside a frame that went over the limit, waiting for its end.
    Discarding,
}

/// An incremental MLLP decoder: `push` chunks, then drain `next_frame` until `None`.
#[derive(Debug)]
pub struct Decoder {
    max_frame_bytes: usize,
    state: State,
    buf: Vec<u8>,
    garbage: usize,
    out: VecDeque<Result<Vec<u8>, MllpError>>,
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder::new(DEFAULT_MAX_FRAME_BYTES)
    }
}

impl Decoder {
    /// A decoder refusing frames longer than `max_frame_bytes` (message bytes, without the framing).
    pub fn new(max_frame_bytes: usize) -> Self {
        Decoder {
            max_frame_bytes: max_frame_bytes.max(1),
            state: State::Idle,
            buf: Vec::new(),
            garbage: 0,
            out: VecDeque::new(),
        }
    }

    /// Feeds bytes as they arrived.
    pub fn push(&mut self, mut chunk: &[u8]) {
        while !chunk.is_empty() {
            let used = match self.state {
                State::Idle => self.idle(chunk),
                State::AfterEnd => {
                    self.state = State::Idle;
                    usize::from(chunk.first() == Some(&CR))
                }
                State::InFrame => self.in_frame(chunk),
                State::Discarding => self.discarding(chunk),
            };
            chunk = chunk.get(used..).unwrap_or_default();
        }
    }

    /// The next complete frame (the message without framing bytes) or error, in stream order.
    pub fn next_frame(&mut self) -> Option<Result<Vec<u8>, MllpError>> {
        self.out.pop_front()
    }

    /// Bytes held for an unfinished frame.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The stream ended: reports an unfinished frame (or trailing garbage) and resets the decoder.
    /// Frames already decoded stay available from `next_frame`.
    pub fn finish(&mut self) -> Result<(), MllpError> {
        let state = std::mem::replace(&mut self.state, State::Idle);
        let bytes = std::mem::take(&mut self.buf).len();
        let garbage = std::mem::take(&mut self.garbage);
        match state {
            State::InFrame | State::Discarding => Err(MllpError::Incomplete { bytes }),
            _ if garbage > 0 => Err(MllpError::Garbage { bytes: garbage }),
            _ => Ok(()),
        }
    }

    fn flush_garbage(&mut self) {
        if self.garbage > 0 {
            self.out.push_back(Err(MllpError::Garbage {
                bytes: std::mem::take(&mut self.garbage),
            }));
        }
    }

    fn idle(&mut self, chunk: &[u8]) -> usize {
        match chunk.iter().position(|&b| b == START) {
            Some(i) => {
                self.count_garbage(chunk.get(..i).unwrap_or_default());
                self.flush_garbage();
                self.state = State::InFrame;
                i + 1
            }
            None => {
                self.count_garbage(chunk);
                if self.garbage > self.max_frame_bytes {
                    self.flush_garbage();
                }
                chunk.len()
            }
        }
    }

    fn count_garbage(&mut self, bytes: &[u8]) {
        self.garbage += bytes.iter().filter(|b| !b.is_ascii_whitespace()).count();
    }

    fn in_frame(&mut self, chunk: &[u8]) -> usize {
        let stop = chunk.iter().position(|&b| b == END || b == START);
        let data = chunk.get(..stop.unwrap_or(chunk.len())).unwrap_or_default();
        if self.buf.len() + data.len() > self.max_frame_bytes {
            let mut head = std::mem::take(&mut self.buf);
            head.extend_from_slice(data);
            head.truncate(HEAD_BYTES.min(self.max_frame_bytes));
            self.out.push_back(Err(MllpError::FrameTooLarge {
                limit: self.max_frame_bytes,
                head,
            }));
            self.state = State::Discarding;
            return data.len();
        }
        self.buf.extend_from_slice(data);
        match stop.and_then(|i| chunk.get(i)) {
            Some(&END) => {
                self.out.push_back(Ok(std::mem::take(&mut self.buf)));
                self.state = State::AfterEnd;
                data.len() + 1
            }
            Some(_) => {
                // A new start block: the current frame never ended.
                self.out.push_back(Err(MllpError::Interrupted {
                    bytes: std::mem::take(&mut self.buf).len(),
                }));
                data.len() + 1
            }
            None => data.len(),
        }
    }

    fn discarding(&mut self, chunk: &[u8]) -> usize {
        match chunk.iter().position(|&b| b == END || b == START) {
            Some(i) => {
                self.state = if chunk.get(i) == Some(&END) {
                    State::AfterEnd
                } else {
                    State::InFrame
                };
                i + 1
            }
            None => chunk.len(),
        }
    }
}
