//! What a guest may say, and when. The tether runs as root inside a VM that runs whatever
//! image a user pulled, so everything it sends is checked against the protocol before it is
//! acted on: each message is accepted only where the protocol allows it, and once. A guest
//! that says anything else (a Started nobody asked for, an unsolicited Pong, output for a
//! session that does not exist, a control message that does not parse, a Hello with another
//! protocol version) has broken the protocol: the session ends as lost, which records why on
//! the container and powers the VM off. Hello alone may come again, in the same version and a
//! few times ([`MAX_HELLOS`]): a guest says it when its line comes back and when it is asked
//! to resync, and a host may connect after the guest's first Hello was written, so it can
//! find both.
//!
//! ```text
//!   start:     Hello → Ready → Started → Exited        (SetupFailed after Hello,
//!                                                      SpawnFailed after Ready)
//!   take-over: Hello → Resumed → Exited                 (Exited may also come once
//!              Hello → Exited (tethers before version 2) during the replay, repeated after)
//! ```

use tether_proto::{Frame, FrameKind, GuestMsg, MAIN_SESSION};

/// How many Hellos one session takes (the first, and the few a line coming back or a resync
/// make the guest say again).
pub(crate) const MAX_HELLOS: u32 = 16;

/// How many shutdown requests one session takes (a power button pressed again and again is
/// a guest flooding its host).
pub(crate) const MAX_SHUTDOWN_ASKS: u32 = 16;

/// The checker of one session's guest messages.
#[derive(Debug)]
pub(crate) struct Protocol {
    start: bool,
    /// The protocol version of the first Hello, once it came.
    hello: Option<u32>,
    hellos: u32,
    shutdown_asks: u32,
    ready: bool,
    started: bool,
    resumed: bool,
    failed: bool,
    /// Exited said (in a take-over: after Resumed).
    exited: bool,
    /// Exited said during a take-over's replay, before Resumed.
    exited_in_replay: bool,
}

impl Protocol {
    /// For a fresh VM (`start`) or a take-over.
    pub(crate) fn new(start: bool) -> Protocol {
        Protocol {
            start,
            hello: None,
            hellos: 0,
            shutdown_asks: 0,
            ready: false,
            started: false,
            resumed: false,
            failed: false,
            exited: false,
            exited_in_replay: false,
        }
    }

    /// Checks a frame's kind and session; control frames are checked by [`Protocol::accept`]
    /// once parsed.
    pub(crate) fn frame(&self, frame: &Frame) -> Result<(), String> {
        match frame.kind {
            FrameKind::Control => Ok(()),
            // An exec session's output is checked by its routes (see `exec.rs`).
            FrameKind::Stdout | FrameKind::Stderr => Ok(()),
            other => Err(format!("a {other:?} frame, which only the host sends")),
        }
    }

    /// Checks `msg` against what the guest said before; `Err` says what it did wrong.
    pub(crate) fn accept(&mut self, msg: &GuestMsg) -> Result<(), String> {
        let session = match msg {
            GuestMsg::Started { session, .. }
            | GuestMsg::SpawnFailed { session, .. }
            | GuestMsg::Exited { session, .. }
            | GuestMsg::Resumed { session, .. } => Some(*session),
            _ => None,
        };
        if session.is_some_and(|s| s != MAIN_SESSION) {
            // An exec session's messages: see `exec.rs`.
            return match msg {
                GuestMsg::Resumed { session, .. } => Err(format!(
                    "Resumed for session {session}, which was not resumed"
                )),
                _ => Ok(()),
            };
        }
        let fresh = self.start && !self.failed;
        let said_hello = self.hello.is_some();
        let (allowed, name) = match msg {
            GuestMsg::Hello { version, .. } if self.hello.is_some_and(|v| v != *version) => {
                (false, "Hello in another version")
            }
            GuestMsg::Hello { .. } => (self.hellos < MAX_HELLOS, "Hello, said again and again,"),
            GuestMsg::Ready => (fresh && said_hello && !self.ready, "Ready"),
            GuestMsg::SetupFailed { .. } => (fresh && said_hello && !self.ready, "SetupFailed"),
            GuestMsg::Started { .. } => (fresh && self.ready && !self.started, "Started"),
            GuestMsg::SpawnFailed { .. } => (fresh && self.ready && !self.started, "SpawnFailed"),
            GuestMsg::Exited { .. } if self.start => {
                (fresh && self.started && !self.exited, "Exited")
            }
            GuestMsg::Exited { .. } if self.resumed => (!self.exited, "Exited"),
            GuestMsg::Exited { .. } => (said_hello && !self.exited_in_replay, "Exited"),
            GuestMsg::Resumed { .. } => (!self.start && said_hello && !self.resumed, "Resumed"),
            GuestMsg::Pong { .. } => (false, "Pong"),
            // Which questions were asked, the session checks.
            GuestMsg::InterfaceSet { .. } => (
                (self.started || self.resumed) && !self.exited,
                "InterfaceSet",
            ),
            GuestMsg::Processes { .. } => {
                ((self.started || self.resumed) && !self.exited, "Processes")
            }
            // Copies run in a configured guest, with or without a process (which copies,
            // `transfer.rs` checks).
            GuestMsg::Stats { .. } => ((self.started || self.resumed) && !self.exited, "Stats"),
            GuestMsg::PathStat { .. } => (self.configured(), "PathStat"),
            GuestMsg::Transfer { .. } => (self.configured(), "Transfer"),
            GuestMsg::Credit { .. } => (self.configured(), "Credit"),
            GuestMsg::TransferDone { .. } => (self.configured(), "TransferDone"),
            GuestMsg::ShutdownAsked { .. } => (
                said_hello
                    && self.hello >= Some(tether_proto::SHUTDOWN_VERSION)
                    && self.shutdown_asks < MAX_SHUTDOWN_ASKS,
                "ShutdownAsked",
            ),
        };
        if !allowed {
            return Err(format!(
                "{name} where the protocol does not allow it ({})",
                self.stage()
            ));
        }
        match msg {
            GuestMsg::Hello { version, .. } => {
                self.hello = Some(*version);
                self.hellos += 1;
            }
            GuestMsg::Ready => self.ready = true,
            GuestMsg::ShutdownAsked { .. } => self.shutdown_asks += 1,
            GuestMsg::Started { .. } => self.started = true,
            GuestMsg::Resumed { .. } => self.resumed = true,
            GuestMsg::SetupFailed { .. } | GuestMsg::SpawnFailed { .. } => self.failed = true,
            GuestMsg::Exited { .. } if self.start || self.resumed => self.exited = true,
            GuestMsg::Exited { .. } => self.exited_in_replay = true,
            _ => {}
        }
        Ok(())
    }

    /// Whether the guest is set up and has not ended.
    fn configured(&self) -> bool {
        (self.ready && !self.failed || self.resumed) && !self.exited
    }

    /// Where the conversation stands, in words, for a violation's message (which users see
    /// in `docker inspect` and in a failed start's error).
    fn stage(&self) -> &'static str {
        match (self.start, self.hello.is_some()) {
            (_, false) => "before Hello",
            (true, _) if self.failed => "after the guest reported a failure",
            (true, _) if self.exited => "after Exited",
            (true, _) if self.started => "after Started",
            (true, _) if self.ready => "after Ready",
            (false, _) if self.exited => "taking over, after Exited",
            (false, _) if self.resumed => "taking over, after Resumed",
            (false, _) => "taking over, after Hello",
            (true, _) => "after Hello",
        }
    }
}

/// The frames `raw` holds from its start, up to the first that does not decode.
pub(crate) fn whole_frames(raw: &[u8]) -> Vec<Frame> {
    let mut dec = tether_proto::FrameDecoder::new();
    dec.push(raw);
    std::iter::from_fn(|| dec.next_frame().ok().flatten()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn hello() -> GuestMsg {
        GuestMsg::Hello {
            version: 2,
            kernel: "k".into(),
            configured: false,
            running: vec![],
            main_exit: None,
            ended: vec![],
            identity: None,
        }
    }

    #[test]
    fn a_start_goes_hello_ready_started_exited_each_once() {
        let mut p = Protocol::new(true);
        let started = GuestMsg::Started { session: 0, pid: 1 };
        let exited = GuestMsg::Exited {
            session: 0,
            code: 0,
        };
        assert!(p.accept(&GuestMsg::Ready).is_err(), "Ready before Hello");
        p.accept(&hello()).unwrap();
        p.accept(&hello()).unwrap();
        for _ in 2..MAX_HELLOS {
            p.accept(&hello()).unwrap();
        }
        assert!(p.accept(&hello()).is_err(), "one Hello too many");
        let mut p = Protocol::new(true);
        p.accept(&hello()).unwrap();
        let mut newer = hello();
        if let GuestMsg::Hello { version, .. } = &mut newer {
            *version += 1;
        }
        assert!(p.accept(&newer).is_err(), "a Hello in another version");
        assert!(p.accept(&started).is_err(), "Started before Ready");
        p.accept(&GuestMsg::Ready).unwrap();
        assert!(p.accept(&exited).is_err(), "Exited before Started");
        p.accept(&started).unwrap();
        assert!(p.accept(&started).is_err(), "a second Started");
        assert!(
            p.accept(&GuestMsg::Pong { seq: 1 }).is_err(),
            "nobody pinged"
        );
        let other = GuestMsg::Resumed {
            session: 3,
            from: 0,
            lost: 0,
        };
        assert!(p.accept(&other).is_err(), "session 3 was not resumed");
        p.accept(&exited).unwrap();
    }

    #[test]
    fn copies_need_a_configured_guest_and_stats_a_running_one() {
        let transfer = GuestMsg::TransferDone {
            session: 3,
            error: None,
        };
        let stats = GuestMsg::Stats {
            seq: 1,
            stats: Box::default(),
        };
        let mut p = Protocol::new(true);
        assert!(p.accept(&transfer).is_err(), "before Hello");
        p.accept(&hello()).unwrap();
        assert!(p.accept(&transfer).is_err(), "before setup");
        p.accept(&GuestMsg::Ready).unwrap();
        p.accept(&transfer).unwrap();
        assert!(
            p.accept(&stats).is_err(),
            "a VM booted for its files runs nothing"
        );
        p.accept(&GuestMsg::Started { session: 0, pid: 1 }).unwrap();
        p.accept(&stats).unwrap();
        p.accept(&GuestMsg::Exited {
            session: 0,
            code: 0,
        })
        .unwrap();
        assert!(p.accept(&transfer).is_err(), "after Exited");
    }

    #[test]
    fn a_violation_says_where_the_conversation_stood() {
        let mut p = Protocol::new(true);
        assert_eq!(
            p.accept(&GuestMsg::Ready).unwrap_err(),
            "Ready where the protocol does not allow it (before Hello)"
        );
        p.accept(&hello()).unwrap();
        let mut newer = hello();
        if let GuestMsg::Hello { version, .. } = &mut newer {
            *version += 1;
        }
        assert_eq!(
            p.accept(&newer).unwrap_err(),
            "Hello in another version where the protocol does not allow it (after Hello)"
        );
        p.accept(&GuestMsg::Ready).unwrap();
        let started = GuestMsg::Started { session: 0, pid: 1 };
        p.accept(&started).unwrap();
        assert_eq!(
            p.accept(&started).unwrap_err(),
            "Started where the protocol does not allow it (after Started)"
        );
        let exited = GuestMsg::Exited {
            session: 0,
            code: 0,
        };
        p.accept(&exited).unwrap();
        assert_eq!(
            p.accept(&exited).unwrap_err(),
            "Exited where the protocol does not allow it (after Exited)"
        );
        let mut taking_over = Protocol::new(false);
        taking_over.accept(&hello()).unwrap();
        assert_eq!(
            taking_over.accept(&GuestMsg::Ready).unwrap_err(),
            "Ready where the protocol does not allow it (taking over, after Hello)"
        );
    }

    #[test]
    fn a_take_over_goes_hello_resumed_exited() {
        let mut p = Protocol::new(false);
        let resumed = GuestMsg::Resumed {
            session: 0,
            from: 0,
            lost: 0,
        };
        assert!(p.accept(&GuestMsg::Ready).is_err());
        p.accept(&hello()).unwrap();
        let exited = GuestMsg::Exited {
            session: 0,
            code: 1,
        };
        p.accept(&exited).unwrap(); // during the replay
        p.accept(&resumed).unwrap();
        assert!(p.accept(&resumed).is_err());
        p.accept(&exited).unwrap(); // repeated after it
        assert!(p.accept(&exited).is_err(), "a third Exited");
        assert!(p.accept(&GuestMsg::Started { session: 0, pid: 1 }).is_err());
    }

    fn name(m: &GuestMsg) -> &'static str {
        match m {
            GuestMsg::Hello { .. } => "Hello",
            GuestMsg::Ready => "Ready",
            GuestMsg::SetupFailed { .. } => "SetupFailed",
            GuestMsg::Started { .. } => "Started",
            GuestMsg::SpawnFailed { .. } => "SpawnFailed",
            GuestMsg::Exited { .. } => "Exited",
            GuestMsg::Resumed { .. } => "Resumed",
            GuestMsg::Pong { .. } => "Pong",
            GuestMsg::InterfaceSet { .. } => "InterfaceSet",
            GuestMsg::Processes { .. } => "Processes",
            GuestMsg::PathStat { .. } => "PathStat",
            GuestMsg::Stats { .. } => "Stats",
            GuestMsg::Transfer { .. } => "Transfer",
            GuestMsg::Credit { .. } => "Credit",
            GuestMsg::TransferDone { .. } => "TransferDone",
            GuestMsg::ShutdownAsked { .. } => "ShutdownAsked",
        }
    }

    fn any_msg() -> impl Strategy<Value = GuestMsg> {
        // Mostly the main session, sometimes another.
        let session = prop::sample::select(vec![0u32, 0, 0, 1, 7]);
        (0..9u8, session).prop_map(|(k, session)| match k {
            0 => hello(),
            1 => GuestMsg::Ready,
            2 => GuestMsg::SetupFailed {
                message: "x".into(),
            },
            3 => GuestMsg::Started { session, pid: 1 },
            4 => GuestMsg::SpawnFailed {
                session,
                message: "x".into(),
                code: 127,
            },
            5 => GuestMsg::Exited { session, code: 0 },
            6 => GuestMsg::Resumed {
                session,
                from: 0,
                lost: 0,
            },
            7 => GuestMsg::InterfaceSet {
                seq: 1,
                error: None,
            },
            _ => GuestMsg::Pong { seq: 1 },
        })
    }

    /// What the checker lets through, up to the first violation (which ends a session),
    /// without the InterfaceSet answers it lets through while the process runs (checked in
    /// `interface_answers_come_only_while_the_process_runs`), the messages of exec sessions
    /// and the Hellos said again, which leave the main session's state as it was.
    fn accepted(start: bool, msgs: &[GuestMsg]) -> Vec<&'static str> {
        let mut p = Protocol::new(start);
        let mut said_hello = false;
        msgs.iter()
            .map_while(|m| p.accept(m).ok().map(|()| m))
            .filter(|m| !crate::guest::exec::is_exec_msg(m))
            .map(name)
            .filter(|n| *n != "InterfaceSet" && *n != "Processes")
            .filter(|n| *n != "Hello" || !std::mem::replace(&mut said_hello, true))
            .collect()
    }

    #[test]
    fn interface_answers_come_only_while_the_process_runs() {
        let set = GuestMsg::InterfaceSet {
            seq: 3,
            error: None,
        };
        let mut p = Protocol::new(true);
        p.accept(&hello()).unwrap();
        assert!(p.accept(&set).is_err(), "before Started");
        let mut p = Protocol::new(true);
        for m in [
            hello(),
            GuestMsg::Ready,
            GuestMsg::Started { session: 0, pid: 1 },
        ] {
            p.accept(&m).unwrap();
        }
        p.accept(&set).unwrap();
        p.accept(&set).unwrap();
        p.accept(&GuestMsg::Exited {
            session: 0,
            code: 0,
        })
        .unwrap();
        assert!(p.accept(&set).is_err(), "after Exited");
    }

    #[test]
    fn shutdown_asks_come_from_tethers_that_know_them_a_few_times() {
        let ask = GuestMsg::ShutdownAsked {
            by: "the power button".into(),
        };
        let mut p = Protocol::new(true);
        assert!(p.accept(&ask).is_err(), "before Hello");
        p.accept(&hello()).unwrap();
        assert!(
            p.accept(&ask).is_err(),
            "a version 2 tether does not say it"
        );
        let mut p = Protocol::new(false);
        let mut newer = hello();
        if let GuestMsg::Hello { version, .. } = &mut newer {
            *version = tether_proto::SHUTDOWN_VERSION;
        }
        p.accept(&newer).unwrap();
        for _ in 0..MAX_SHUTDOWN_ASKS {
            p.accept(&ask).unwrap();
        }
        let err = p.accept(&ask).unwrap_err();
        assert!(err.contains("ShutdownAsked where"), "{err}");
    }

    fn prefix_of_one(trace: &[&str], paths: &[&[&str]]) -> bool {
        paths.iter().any(|p| p.starts_with(trace))
    }

    proptest! {
        /// Whatever a guest sends, the messages acted on follow the protocol's paths.
        #[test]
        fn only_the_protocols_paths_get_through(msgs in prop::collection::vec(any_msg(), 0..30)) {
            let start = accepted(true, &msgs);
            prop_assert!(
                prefix_of_one(&start, &[
                    &["Hello", "Ready", "Started", "Exited"],
                    &["Hello", "SetupFailed"],
                    &["Hello", "Ready", "SpawnFailed"],
                ]),
                "start let through {:?}", start
            );
            let take_over = accepted(false, &msgs);
            prop_assert!(
                prefix_of_one(&take_over, &[
                    &["Hello", "Exited", "Resumed", "Exited"],
                    &["Hello", "Resumed", "Exited"],
                ]),
                "take-over let through {:?}", take_over
            );
        }
    }

    #[test]
    fn frames_of_other_kinds_are_refused() {
        let p = Protocol::new(true);
        assert!(p.frame(&Frame::data(FrameKind::Stdout, 0, vec![])).is_ok());
        // An exec session's output: its routes say whether the session runs (`exec.rs`).
        assert!(p.frame(&Frame::data(FrameKind::Stderr, 5, vec![])).is_ok());
        assert!(p.frame(&Frame::data(FrameKind::Stdin, 0, vec![])).is_err());
        assert!(p
            .frame(&Frame::data(FrameKind::StdinClosed, 0, vec![]))
            .is_err());
    }
}
