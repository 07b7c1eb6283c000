//! The wire format's own tests: framing, control messages, taking over.
use super::*;

#[test]
fn frames_survive_arbitrary_splits() {
    let frames = vec![
        Frame::control(&HostMsg::Ping { seq: 7 }),
        Frame::data(FrameKind::Stdout, 0, b"hello\n".to_vec()),
        Frame::data(FrameKind::StdinClosed, 3, Vec::new()),
    ];
    let mut wire = Vec::new();
    for f in &frames {
        encode_into(f, &mut wire);
    }
    for chunk in [1, 2, 5, 9, 100] {
        let mut dec = FrameDecoder::new();
        let mut got = Vec::new();
        for piece in wire.chunks(chunk) {
            dec.push(piece);
            while let Some(f) = dec.next_frame().unwrap() {
                got.push(f);
            }
        }
        assert_eq!(got, frames, "chunk size {chunk}");
    }
}

#[test]
fn control_messages_round_trip() {
    let msg = HostMsg::Spawn {
        session: 0,
        process: Process {
            argv: vec!["echo".into(), "hi".into()],
            tty: true,
            ..Default::default()
        },
    };
    let f = Frame::control(&msg);
    assert_eq!(f.parse_control::<HostMsg>().unwrap(), msg);
    let g = Frame::control(&GuestMsg::Exited {
        session: 0,
        code: 3,
    });
    assert_eq!(
        g.parse_control::<GuestMsg>().unwrap(),
        GuestMsg::Exited {
            session: 0,
            code: 3
        }
    );
}

#[test]
fn a_host_taking_over_skips_to_hello() {
    let hello = Frame::control(&GuestMsg::Hello {
        version: PROTOCOL_VERSION,
        kernel: "6.1".into(),
        configured: true,
        running: vec![0],
        main_exit: None,
        ended: vec![],
        identity: None,
    });
    let after = Frame::data(FrameKind::Stdout, 0, b"next\n".to_vec());
    // The tail of a torn output frame (itself mentioning hello) precedes the Hello.
    let mut wire = br#"rn frame {"type":"hello" in the output"#.to_vec();
    encode_into(&hello, &mut wire);
    encode_into(&after, &mut wire);
    for chunk in [1, 3, 7, 64, 1000] {
        let mut dec = FrameDecoder::new();
        let mut synced = false;
        let mut got = Vec::new();
        let mut skipped = Vec::new();
        for piece in wire.chunks(chunk) {
            dec.push(piece);
            if !synced {
                synced = dec.skip_to_hello(&mut skipped);
                if !synced {
                    continue;
                }
            }
            while let Some(f) = dec.next_frame().unwrap() {
                got.push(f);
            }
        }
        assert_eq!(
            got,
            vec![hello.clone(), after.clone()],
            "chunk size {chunk}"
        );
        assert_eq!(skipped, br#"rn frame {"type":"hello" in the output"#);
    }
    let mut dec = FrameDecoder::new();
    dec.push(&[7; 10_000]);
    assert!(!dec.skip_to_hello(&mut Vec::new()));
    assert!(dec.buffered() < 64, "garbage before a Hello is not kept");
}

#[test]
fn a_serial_line_is_read_from_the_first_resync_on() {
    let resync = Frame::control(&HostMsg::Resync);
    let setup = Frame::control(&HostMsg::Ping { seq: 3 });
    // The tail of a Resync the UART's FIFO lost the start of, then whole frames.
    let whole = encode(&resync);
    let mut wire = whole[whole.len() - 10..].to_vec();
    encode_into(&resync, &mut wire);
    encode_into(&setup, &mut wire);
    for chunk in [1, 2, 5, 64] {
        let mut dec = FrameDecoder::new();
        let (mut synced, mut got) = (false, Vec::new());
        for piece in wire.chunks(chunk) {
            dec.push(piece);
            synced = synced || dec.skip_to_resync();
            if synced {
                while let Some(f) = dec.next_frame().unwrap() {
                    got.push(f);
                }
            }
        }
        assert_eq!(
            got,
            vec![resync.clone(), setup.clone()],
            "chunk size {chunk}"
        );
    }
}

#[test]
fn oversized_and_unknown_frames_are_errors() {
    let mut dec = FrameDecoder::new();
    dec.push(&[9, 0, 0, 0, 0, 0, 0, 0, 0]);
    assert!(matches!(dec.next_frame(), Err(ProtoError::UnknownKind(9))));
    let mut dec = FrameDecoder::new();
    dec.push(&[2, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff]);
    assert!(matches!(dec.next_frame(), Err(ProtoError::TooLarge(_))));
}

#[test]
fn copy_messages_round_trip() {
    let msgs = [
        GuestMsg::PathStat {
            seq: 1,
            result: Err(PathError {
                kind: PathErrorKind::NotFound,
                message: "Could not find the file /x".into(),
            }),
        },
        GuestMsg::Transfer {
            session: 4,
            stat: Ok(PathStat {
                name: "x".into(),
                size: 3,
                mode: 0o100644,
                ..Default::default()
            }),
            window: archive::TRANSFER_WINDOW,
        },
        GuestMsg::TransferDone {
            session: 4,
            error: Some("cancelled".into()),
        },
    ];
    for m in msgs {
        let f = Frame::control(&m);
        assert_eq!(f.parse_control::<GuestMsg>().unwrap(), m);
    }
    let get = HostMsg::ArchiveGet {
        session: 2,
        path: "/".into(),
        window: 1,
        mode: GetMode::Layer,
        paths: vec!["etc/passwd".into()],
        pause: true,
    };
    assert_eq!(
        Frame::control(&get).parse_control::<HostMsg>().unwrap(),
        get
    );
    // A host before modes sent none: a copy.
    let old: HostMsg =
        serde_json::from_str(r#"{"type":"archive_get","session":1,"path":"/x","window":5}"#)
            .unwrap();
    assert!(matches!(
        old,
        HostMsg::ArchiveGet {
            mode: GetMode::Copy,
            pause: false,
            ..
        }
    ));
}
