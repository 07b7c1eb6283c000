use super::*;
use crate::syscall::fake::{Call, RecordingSyscall, Spawned};
use tether_proto::guest::Rlimit;
use tether_proto::FrameDecoder;

use crate::launch::tests::{GROUP, PASSWD};

struct Guest {
    sys: Arc<RecordingSyscall>,
    reaper: Arc<Reaper>,
    sessions: Arc<Sessions>,
    sent: tempfile::NamedTempFile,
    main_exited: Receiver<()>,
}

/// A container set up on /root-fs whose image has a passwd and a group file.
fn guest() -> Guest {
    let sys = Arc::new(RecordingSyscall::new());
    sys.file("/root-fs/etc/passwd", PASSWD);
    sys.file("/root-fs/etc/group", GROUP);
    let sent = tempfile::NamedTempFile::new().unwrap();
    let out = Writer::to_file(sent.reopen().unwrap());
    let reaper = Reaper::new();
    let (tx, main_exited) = mpsc::channel();
    let tx = Mutex::new(tx);
    let on_exit = Box::new(move || lock(&tx).send(()).unwrap());
    let sessions = Sessions::new(sys.clone(), reaper.clone(), out, on_exit);
    Guest {
        sys,
        reaper,
        sessions,
        sent,
        main_exited,
    }
}

impl Guest {
    fn spawn(&self, session: u32, p: Process, m: &Mounted) {
        self.sessions.spawn(session, p, Some(m))
    }

    /// The control messages sent to the host so far.
    fn sent(&self) -> Vec<GuestMsg> {
        let mut dec = FrameDecoder::new();
        dec.push(&std::fs::read(self.sent.path()).unwrap());
        std::iter::from_fn(|| dec.next_frame().unwrap())
            .filter_map(|f| f.parse_control().ok())
            .collect()
    }

    fn spawned(&self) -> Vec<Spawned> {
        (self.sys.calls().into_iter())
            .filter_map(|c| match c {
                Call::Spawn(s) => Some(s),
                _ => None,
            })
            .collect()
    }

    fn child_calls(&self) -> Vec<Call> {
        self.sys
            .calls()
            .into_iter()
            .filter(Call::in_child)
            .collect()
    }
}

fn root() -> Mounted {
    Mounted::new("/root-fs".into(), None)
}

fn sh(user: &str) -> Process {
    Process {
        argv: vec!["sh".into(), "-c".into(), "true".into()],
        env: vec!["A=1".into()],
        cwd: "/work".into(),
        user: user.into(),
        ..Process::default()
    }
}

fn spawn_failed(code: i32, message: &str) -> GuestMsg {
    GuestMsg::SpawnFailed {
        session: 0,
        message: message.into(),
        code,
    }
}

#[test]
fn spawn_hands_the_fork_argv_env_cwd_and_the_users_ids() {
    let g = guest();
    g.spawn(0, sh("vic"), &root());
    let path = exec::DEFAULT_PATH;
    assert_eq!(
        g.spawned(),
        [Spawned {
            argv: vec!["sh".into(), "-c".into(), "true".into()],
            env: vec![
                "A=1".into(),
                format!("PATH={path}"),
                "HOME=/home/vic".into()
            ],
            candidates: exec::exec_candidates("sh", path),
            root: "/root-fs".into(),
            cwd: "/work".into(),
            uid: 1000,
            gid: 1000,
            groups: vec![1000, 10, 29],
            tty: false,
        }]
    );
    // The missing working directory was made first, as Docker makes it.
    assert!(g.sys.calls().contains(&Call::Mkdir("/root-fs/work".into())));
    assert_eq!(
        g.sent(),
        [GuestMsg::Started {
            session: 0,
            pid: 100
        }]
    );
}

#[test]
fn a_missing_user_fails_the_spawn_in_dockers_words() {
    let g = guest();
    g.spawn(0, sh("nobody"), &root());
    assert!(g.spawned().is_empty());
    assert_eq!(
        g.sent(),
        [spawn_failed(
            126,
            "unable to find user nobody: no matching entries in passwd file"
        )]
    );
}

#[test]
fn the_child_joins_the_container_then_drops_privileges_then_execs() {
    let g = guest();
    let mut p = sh("vic");
    p.privileges.capabilities = Some(u64::MAX);
    p.privileges.no_new_privileges = true;
    p.privileges.rlimits = vec![Rlimit {
        name: "nofile".into(),
        soft: 1024,
        hard: 2048,
    }];
    g.sys.file("/proc/sys/kernel/cap_last_cap", "40\n");
    let procs = c"/sys/fs/cgroup/container/cgroup.procs".to_owned();
    g.spawn(0, p, &Mounted::new("/root-fs".into(), Some(procs)));
    let calls: Vec<Call> = (g.child_calls().into_iter())
        .map(|c| match c {
            // The pipes' numbers vary; where they go does not.
            Call::Dup2 { dst, .. } => Call::Dup2 { src: -1, dst },
            c => c,
        })
        .collect();
    assert_eq!(
        calls,
        [
            Call::ResetSignals,
            Call::Setsid,
            Call::Dup2 { src: -1, dst: 0 },
            Call::Dup2 { src: -1, dst: 1 },
            Call::Dup2 { src: -1, dst: 2 },
            Call::JoinCgroup("/sys/fs/cgroup/container/cgroup.procs".into()),
            Call::Setrlimit {
                resource: libc::RLIMIT_NOFILE,
                soft: 1024,
                hard: 2048
            },
            Call::EnterRoot("/root-fs".into()),
            Call::Chdir("/work".into()),
            Call::KeepCaps,
            Call::Setgroups(vec![1000, 10, 29]),
            Call::Setgid(1000),
            Call::Setuid(1000),
            Call::Capset((1 << 41) - 1),
            Call::ClearAmbientCaps,
            Call::NoNewPrivs,
            Call::Execve("/usr/local/sbin/sh".into()),
        ]
    );
}

#[test]
fn exec_tries_each_path_entry_and_a_command_found_nowhere_exits_127() {
    let g = guest();
    g.sys.fail(libc::ENOENT, |c| matches!(c, Call::Execve(_)));
    let mut p = sh("");
    p.env = vec!["PATH=/bin:/usr/bin".into()];
    g.spawn(0, p, &root());
    let execs: Vec<Call> = (g.child_calls().into_iter())
        .filter(|c| matches!(c, Call::Execve(_)))
        .collect();
    assert_eq!(
        execs,
        [
            Call::Execve("/bin/sh".into()),
            Call::Execve("/usr/bin/sh".into())
        ]
    );
    assert_eq!(
        g.sent(),
        [spawn_failed(
            127,
            "exec: \"sh\": executable file not found in $PATH"
        )]
    );
}

#[test]
fn a_refused_setuid_is_reported_as_the_user_failing_and_nothing_execs() {
    let g = guest();
    g.sys.fail(libc::EPERM, |c| matches!(c, Call::Setuid(_)));
    g.spawn(0, sh("vic"), &root());
    assert!(!g.child_calls().iter().any(|c| matches!(c, Call::Execve(_))));
    assert_eq!(
        g.sent(),
        [spawn_failed(
            126,
            "setting the user failed: operation not permitted"
        )]
    );
}

#[test]
fn a_failed_fork_is_reported_with_its_error() {
    let g = guest();
    g.sys.fail(libc::EAGAIN, |c| matches!(c, Call::Spawn(_)));
    g.spawn(0, sh(""), &root());
    assert!(g.child_calls().is_empty());
    assert_eq!(
        g.sent(),
        [spawn_failed(
            126,
            "fork failed: Resource temporarily unavailable (os error 11)"
        )]
    );
}

#[test]
fn signals_go_to_the_pid_of_their_session_only() {
    let g = guest();
    g.spawn(0, sh(""), &root());
    g.spawn(1, sh(""), &root());
    g.sessions.signal(1, libc::SIGTERM);
    g.sessions.signal(7, libc::SIGKILL);
    let kills: Vec<Call> = (g.sys.calls().into_iter())
        .filter(|c| matches!(c, Call::Kill { .. }))
        .collect();
    assert_eq!(
        kills,
        [Call::Kill {
            pid: 101,
            signal: libc::SIGTERM
        }]
    );
}

#[test]
fn a_session_is_reported_started_before_any_of_its_output() {
    let g = guest();
    g.sys.child_writes(b"at once\n");
    let sessions = 1..=20u32;
    for s in sessions.clone() {
        g.spawn(s, sh(""), &root());
    }
    let frames = || {
        let mut dec = FrameDecoder::new();
        dec.push(&std::fs::read(g.sent.path()).unwrap());
        std::iter::from_fn(|| dec.next_frame().unwrap()).collect::<Vec<_>>()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut all = frames();
    while all.iter().filter(|f| f.kind == FrameKind::Stdout).count() < 20 {
        assert!(Instant::now() < deadline, "not every session's output came");
        std::thread::sleep(Duration::from_millis(10));
        all = frames();
    }
    for s in sessions {
        let started = all.iter().position(|f| {
            f.parse_control::<GuestMsg>().ok()
                == Some(GuestMsg::Started {
                    session: s,
                    pid: 99 + s,
                })
        });
        let output = all
            .iter()
            .position(|f| f.kind == FrameKind::Stdout && f.session == s);
        assert!(
            matches!((started, output), (Some(a), Some(b)) if a < b),
            "session {s}: Started at {started:?}, output at {output:?}"
        );
    }
}

#[test]
fn the_main_process_exit_kills_every_process_then_reports_the_exit() {
    let g = guest();
    g.spawn(MAIN_SESSION, sh(""), &root());
    assert!(g.reaper.deliver(100, 3 << 8));
    g.main_exited
        .recv_timeout(Duration::from_secs(5))
        .expect("the main exit is reported");
    assert!(g.sys.calls().contains(&Call::Kill {
        pid: -1,
        signal: libc::SIGKILL
    }));
    assert_eq!(
        g.sent().last(),
        Some(&GuestMsg::Exited {
            session: MAIN_SESSION,
            code: 3
        })
    );
    assert_eq!(g.sessions.main_exit(), Some(3));
    assert!(g.sessions.running().is_empty());
}

#[test]
fn a_terminal_comes_from_the_containers_devpts_and_resizes_on_its_master() {
    let g = guest();
    let mut p = sh("vic");
    (p.tty, p.rows, p.cols) = (true, 24, 80);
    g.spawn(0, p, &root());
    // After the working directory: the terminal, its size, and its owner.
    let calls = g.sys.calls()[1..].to_vec();
    let Call::OpenPty { ref ptmx, master } = calls[0] else {
        panic!("no terminal opened: {calls:?}");
    };
    assert_eq!(ptmx, "/root-fs/dev/pts/ptmx");
    assert_eq!(
        calls[1],
        Call::SetWinsize {
            fd: master,
            rows: 24,
            cols: 80
        }
    );
    let Call::Fchown {
        fd: slave,
        uid: 1000,
        gid: 5,
    } = calls[2]
    else {
        panic!("the terminal is not the user's: {calls:?}");
    };
    // The child gets the terminal as stdin, stdout and stderr, and as its controlling one.
    for dst in 0..3 {
        assert!(calls.contains(&Call::Dup2 { src: slave, dst }));
    }
    assert!(calls.contains(&Call::ControllingTty(0)));
    g.sessions.resize(0, 50, 132);
    assert_eq!(
        g.sys.calls().last(),
        Some(&Call::SetWinsize {
            fd: master,
            rows: 50,
            cols: 132
        })
    );
}
