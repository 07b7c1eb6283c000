use super::*;
use clap::CommandFactory;

#[test]
fn the_command_line_is_well_formed() {
    Cli::command().debug_assert();
}

#[test]
fn create_and_configure_both_take_the_container_network_flags() {
    let flags = ["--cn", "br0:routable", "--cng", "br0:10.9.0.1/24"];
    for cmd in ["create", "configure"] {
        let argv = ["vic-machine", cmd].into_iter().chain(flags);
        let nets = match Cli::try_parse_from(argv).unwrap().command {
            Command::Create(a) => a.container_networks,
            Command::Configure(a) => a.container_networks,
            _ => panic!("not {cmd}"),
        };
        assert_eq!(nets.networks().unwrap()[0].name, "routable", "{cmd}");
    }
}

#[test]
fn inspect_config_takes_its_own_name_and_durations_take_vics_units() {
    let cli = Cli::try_parse_from([
        "vic-machine",
        "inspect",
        "config",
        "--name",
        "x",
        "--format",
        "raw",
    ])
    .unwrap();
    let Command::Inspect(InspectArgs {
        command: Some(InspectCommand::Config { common, format }),
        ..
    }) = cli.command
    else {
        panic!("not inspect config");
    };
    assert_eq!(common.name, "x");
    assert_eq!(format, inspect::Format::Raw);
    assert_eq!(parse_duration("3m"), Ok(Duration::from_secs(180)));
    assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
    assert!(parse_duration("3x").is_err());
}

#[test]
fn completions_name_every_subcommand_and_flag() {
    for shell in [
        clap_complete::Shell::Bash,
        clap_complete::Shell::Zsh,
        clap_complete::Shell::Fish,
    ] {
        let mut out = Vec::new();
        clap_complete::generate(shell, &mut Cli::command(), "vic-machine", &mut out);
        let text = String::from_utf8(out).unwrap();
        for word in [
            "create",
            "configure",
            "inspect",
            "ops-user",
            "bundle",
            "output",
        ] {
            assert!(text.contains(word), "{shell}: {word}");
        }
    }
    let cli = Cli::try_parse_from(["vic-machine", "ls", "--output", "json"]).unwrap();
    assert!(matches!(
        cli.command,
        Command::Ls {
            output: report::Output::Json,
            ..
        }
    ));
    assert!(Cli::try_parse_from(["vic-machine", "ls", "--output", "yaml"]).is_err());
}
