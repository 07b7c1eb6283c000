//! The incremental frame decoder, and where a reader that starts mid-stream finds its first
//! frame it can trust (a guest's `Hello`, a host's `Resync`).

use crate::{Frame, FrameKind, ProtoError, HEADER_LEN, MAIN_SESSION, MAX_PAYLOAD};

/// What every `Hello` control frame's payload starts with (serde writes the tag first).
const HELLO_PREFIX: &[u8] = br#"{"type":"hello""#;
/// What a `Resync` control frame's payload starts with.
const RESYNC_PREFIX: &[u8] = br#"{"type":"resync""#;

/// Incremental decoder: push bytes as they arrive, pull whole frames out.
///
/// Whole frames are taken from a read position and the consumed bytes dropped in one move
/// when they are at least half the buffer, so a read holding thousands of tiny frames (a
/// guest may send them) costs time linear in its size. A caller that takes every frame after
/// each push holds at most one partial frame ([`HEADER_LEN`] + [`MAX_PAYLOAD`]) plus a push.
#[derive(Debug, Default, Clone)]
pub struct FrameDecoder {
    buf: Vec<u8>,
    /// Where the next frame begins in `buf`.
    start: usize,
}

impl FrameDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds received bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.start > 0 && self.start >= self.buf.len() / 2 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes pushed and not yet taken as frames.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }

    fn pending(&self) -> &[u8] {
        &self.buf[self.start..]
    }

    /// The bytes pushed and not taken as frames, for whoever reads the stream next.
    pub fn into_pending(mut self) -> Vec<u8> {
        self.buf.drain(..self.start);
        self.buf
    }

    /// Drops everything before the first `Hello` frame and returns true once one is at the
    /// front. A host taking over a running guest starts reading mid-stream (possibly inside a
    /// frame torn by the previous host's death); the guest's `Hello` is the first place it can
    /// trust. While none has arrived, only a tail that could begin one is kept. What is
    /// dropped is appended to `skipped` (a tether older than [`RESUME_VERSION`] cannot resend
    /// it, so its host makes what it can of it).
    pub fn skip_to_hello(&mut self, skipped: &mut Vec<u8>) -> bool {
        self.skip_to(HELLO_PREFIX, skipped)
    }

    /// Drops everything before the first `Resync` frame and returns true once one is at the
    /// front: where a guest on a serial line, which has no hang-up, finds a new host's first
    /// whole frame (what came before may be the tail of a frame the line cut).
    pub fn skip_to_resync(&mut self) -> bool {
        self.skip_to(RESYNC_PREFIX, &mut Vec::new())
    }

    fn skip_to(&mut self, prefix: &[u8], skipped: &mut Vec<u8>) -> bool {
        let at = self
            .pending()
            .windows(HEADER_LEN + prefix.len())
            .position(|w| {
                w[0] == FrameKind::Control as u8
                    && w[1..5] == MAIN_SESSION.to_be_bytes()
                    && u32::from_be_bytes([w[5], w[6], w[7], w[8]]) as usize <= MAX_PAYLOAD
                    && &w[HEADER_LEN..] == prefix
            });
        let (cut, found) = match at {
            Some(at) => (at, true),
            None => {
                let keep = HEADER_LEN + prefix.len() - 1;
                (self.buffered().saturating_sub(keep), false)
            }
        };
        skipped.extend_from_slice(&self.pending()[..cut]);
        self.start += cut;
        found
    }

    /// The next complete frame, if one has arrived.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, ProtoError> {
        let b = self.pending();
        if b.len() < HEADER_LEN {
            return Ok(None);
        }
        let kind = FrameKind::from_u8(b[0]).ok_or(ProtoError::UnknownKind(b[0]))?;
        let session = u32::from_be_bytes([b[1], b[2], b[3], b[4]]);
        let len = u32::from_be_bytes([b[5], b[6], b[7], b[8]]) as usize;
        if len > MAX_PAYLOAD {
            return Err(ProtoError::TooLarge(len));
        }
        if b.len() < HEADER_LEN + len {
            return Ok(None);
        }
        let payload = b[HEADER_LEN..HEADER_LEN + len].to_vec();
        self.start += HEADER_LEN + len;
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        }
        Ok(Some(Frame {
            kind,
            session,
            payload,
        }))
    }
}
