//! vrrpctl: the operator's command line for vrrpd and lbd.

use std::process::ExitCode;

use clap::Parser;
use vrrpctl::{
    announce, check_config, daemon, decode, import, reload, server, services, Cli, Command,
};

fn main() -> ExitCode {
    let Cli {
        socket: socket_arg,
        config,
        command,
    } = Cli::parse();
    let socket = || daemon::socket_path(socket_arg.as_deref(), config.as_deref());
    let result = match command {
        Command::CheckConfig(args) => check_config::run(&args),
        Command::Decode(args) => decode::run(args),
        Command::Import(c) => import::run(&c),
        Command::Status(args) => socket().and_then(|s| daemon::status(&s, &args)),
        Command::Watch => socket().and_then(|s| daemon::watch(&s)),
        Command::Drill(c) => socket().and_then(|s| daemon::drill(&s, &c)),
        Command::Maintenance(args) => socket().and_then(|s| daemon::maintenance(&s, &args)),
        Command::Priority(c) => socket().and_then(|s| daemon::priority(&s, &c)),
        Command::Reload(args) => reload::run(socket_arg.as_deref(), config.as_deref(), &args),
        Command::Services(args) => services::socket_path(socket_arg.as_deref(), config.as_deref())
            .and_then(|s| services::run(&s, &args)),
        Command::Server(c) => services::socket_path(socket_arg.as_deref(), config.as_deref())
            .and_then(|s| server::run(&s, &c)),
        Command::Announce(c) => services::socket_path(socket_arg.as_deref(), config.as_deref())
            .and_then(|s| announce::run(&s, &c)),
    };
    match result {
        Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        Err(err) => {
            eprintln!("vrrpctl: {}", error_text(&err));
            ExitCode::from(1)
        }
    }
}

/// The error and its causes, each said once: the control client's errors
/// already carry their cause in their own message (`{:#}` said it twice).
fn error_text(err: &anyhow::Error) -> String {
    let mut text = err.to_string();
    for cause in err.chain().skip(1) {
        let cause = cause.to_string();
        if !text.contains(&cause) {
            text.push_str(": ");
            text.push_str(&cause);
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_daemon_error_is_said_once() {
        let err = anyhow::Error::new(ctl::CtlError::Remote {
            path: "/run/lbsuite/vrrpd.sock".into(),
            method: "maintenance".into(),
            error: ctl::ReplyError::failed("no sync group \"x\"; groups: edge"),
        });
        let text = error_text(&err);
        assert_eq!(text.matches("no sync group").count(), 1, "{text}");
        assert!(text.starts_with("/run/lbsuite/vrrpd.sock: maintenance failed: "));
    }

    #[test]
    fn causes_not_in_the_message_are_kept() {
        let err = anyhow::anyhow!("disk on fire").context("reading x.pcap");
        assert_eq!(error_text(&err), "reading x.pcap: disk on fire");
    }
}
