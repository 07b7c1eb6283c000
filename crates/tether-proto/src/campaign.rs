//! A bad-input campaign against the frame decoder, the host's first contact with whatever
//! root inside a container VM writes to the channel. Valid streams decode to exactly the
//! frames sent, however the bytes are split; arbitrary bytes never panic and never make the
//! decoder hold more than one frame's worth; a host taking over finds the first Hello after
//! any amount of garbage.
//!
//! `PROPTEST_CASES` sets the number of cases (`make fuzz` runs many more than `make test`).

use super::*;
use proptest::prelude::*;

fn kind() -> impl Strategy<Value = FrameKind> {
    prop::sample::select(vec![
        FrameKind::Control,
        FrameKind::Stdin,
        FrameKind::Stdout,
        FrameKind::Stderr,
        FrameKind::StdinClosed,
    ])
}

fn frame() -> impl Strategy<Value = Frame> {
    (kind(), 0u32..4, prop::collection::vec(any::<u8>(), 0..300))
        .prop_map(|(kind, session, payload)| Frame::data(kind, session, payload))
}

/// Cuts `bytes` at the given points (taken modulo its length).
fn split(bytes: &[u8], cuts: &[usize]) -> Vec<Vec<u8>> {
    let mut at: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
    at.push(0);
    at.push(bytes.len());
    at.sort_unstable();
    at.windows(2).map(|w| bytes[w[0]..w[1]].to_vec()).collect()
}

fn hello() -> Frame {
    Frame::control(&GuestMsg::Hello {
        version: RESUME_VERSION,
        kernel: "k".into(),
        configured: true,
        running: vec![0],
        main_exit: None,
        ended: vec![],
        identity: None,
    })
}

proptest! {
    #[test]
    fn valid_streams_decode_to_the_frames_sent(
        frames in prop::collection::vec(frame(), 0..40),
        cuts in prop::collection::vec(any::<usize>(), 0..20),
    ) {
        let wire: Vec<u8> = frames.iter().flat_map(encode).collect();
        let mut dec = FrameDecoder::new();
        let mut got = Vec::new();
        for piece in split(&wire, &cuts) {
            dec.push(&piece);
            while let Some(f) = dec.next_frame().expect("a valid stream") {
                got.push(f);
            }
        }
        prop_assert_eq!(got, frames);
        prop_assert_eq!(dec.buffered(), 0);
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_hold_at_most_one_frame(
        bytes in prop::collection::vec(any::<u8>(), 0..4096),
        cuts in prop::collection::vec(any::<usize>(), 0..20),
    ) {
        let mut dec = FrameDecoder::new();
        'stream: for piece in split(&bytes, &cuts) {
            dec.push(&piece);
            loop {
                match dec.next_frame() {
                    Ok(Some(f)) => prop_assert!(f.payload.len() <= MAX_PAYLOAD),
                    Ok(None) => break,
                    // The session ends at the first error: nothing after it is read.
                    Err(_) => break 'stream,
                }
            }
            prop_assert!(dec.buffered() < HEADER_LEN + MAX_PAYLOAD);
        }
    }

    #[test]
    fn headers_that_lie_are_refused_or_wait_for_their_payload(
        kind_byte in any::<u8>(),
        len in any::<u32>(),
        tail in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        let mut wire = vec![kind_byte, 0, 0, 0, 0];
        wire.extend_from_slice(&len.to_be_bytes());
        wire.extend_from_slice(&tail);
        let mut dec = FrameDecoder::new();
        dec.push(&wire);
        match dec.next_frame() {
            Err(ProtoError::UnknownKind(k)) => prop_assert!(k > 4),
            Err(ProtoError::TooLarge(n)) => prop_assert!(n > MAX_PAYLOAD),
            Ok(None) => prop_assert!(len as usize > tail.len()),
            Ok(Some(f)) => prop_assert_eq!(f.payload.len(), len as usize),
            Err(e) => prop_assert!(false, "unexpected {}", e),
        }
    }

    #[test]
    fn a_take_over_finds_hello_after_any_garbage(
        garbage in prop::collection::vec(any::<u8>(), 0..3000),
        after in prop::collection::vec(frame(), 0..5),
        cuts in prop::collection::vec(any::<usize>(), 0..20),
    ) {
        // No `{` in the garbage, so it cannot hold a Hello of its own.
        let garbage: Vec<u8> = garbage.into_iter().map(|b| if b == b'{' { b'}' } else { b }).collect();
        let mut wire = garbage.clone();
        encode_into(&hello(), &mut wire);
        for f in &after {
            encode_into(f, &mut wire);
        }
        let mut dec = FrameDecoder::new();
        let mut skipped = Vec::new();
        let mut synced = false;
        let mut got = Vec::new();
        for piece in split(&wire, &cuts) {
            dec.push(&piece);
            if !synced {
                synced = dec.skip_to_hello(&mut skipped);
                prop_assert!(dec.buffered() <= piece.len() + HEADER_LEN + 15);
                if !synced {
                    continue;
                }
            }
            while let Some(f) = dec.next_frame().expect("frames after Hello are valid") {
                got.push(f);
            }
        }
        prop_assert!(synced);
        prop_assert_eq!(skipped, garbage);
        prop_assert_eq!(got.first(), Some(&hello()));
        prop_assert_eq!(&got[1..], &after[..]);
    }
}

/// A read full of empty frames costs time linear in its size (consumed bytes are dropped in
/// one move, not one per frame).
#[test]
fn many_tiny_frames_in_one_read_decode_in_linear_time() {
    let one = encode(&Frame::data(FrameKind::Stdout, 0, Vec::new()));
    let wire: Vec<u8> = one.repeat(200_000);
    let mut dec = FrameDecoder::new();
    dec.push(&wire);
    let mut n = 0;
    while dec.next_frame().unwrap().is_some() {
        n += 1;
    }
    assert_eq!(n, 200_000);
    assert_eq!(dec.buffered(), 0);
}
