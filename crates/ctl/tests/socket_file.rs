//! The socket file: permissions, parent directory, stale and live sockets, cleanup.

mod common;

use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};

use common::{socket_path, within, TestDaemon};
use ctl::{methods, Client, CtlError, EventBus, Server, SocketGroup, SocketPerms};
use serde_json::{json, Value};

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Whether a root-only test must run: skips with a message unless required.
fn root_or_skip() -> bool {
    if is_root() {
        return true;
    }
    if std::env::var("LBSUITE_REQUIRE_ROOT").as_deref() == Ok("1") {
        panic!("this test needs root and LBSUITE_REQUIRE_ROOT=1");
    }
    eprintln!("SKIP (needs root)");
    false
}

#[tokio::test]
async fn socket_is_owner_only_by_default_and_removed_on_shutdown() {
    let (_dir, path) = socket_path();
    let daemon = TestDaemon::start(path.clone(), EventBus::default()).await;
    let meta = std::fs::symlink_metadata(&path).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    // Nothing left over from binding next to the socket.
    let names: Vec<_> = std::fs::read_dir(path.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("ctl.sock")]);

    daemon.stop().await;
    assert!(!path.exists(), "socket file left after shutdown");
}

#[tokio::test]
async fn a_socket_group_gives_mode_0660_and_that_gid() {
    if !root_or_skip() {
        return;
    }
    let (_dir, path) = socket_path();
    let perms = SocketPerms {
        group: Some(SocketGroup::Id(4242)),
    };
    let server = within(Server::bind(&path, perms)).await.unwrap();
    let meta = std::fs::symlink_metadata(&path).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o660);
    assert_eq!(meta.gid(), 4242);
    drop(server);
    assert!(
        !path.exists(),
        "an unserved server removes its socket on drop"
    );
}

#[tokio::test]
async fn a_socket_group_name_is_resolved_and_an_unknown_one_refused() {
    let (_dir, path) = socket_path();
    let err = within(Server::bind(
        &path,
        SocketPerms {
            group: Some(SocketGroup::parse("no-such-group-lbsuite")),
        },
    ))
    .await
    .unwrap_err();
    assert!(matches!(&err, CtlError::UnknownGroup { name } if name == "no-such-group-lbsuite"));
    assert!(!path.exists());

    if !root_or_skip() {
        return;
    }
    // "daemon" has gid 1 on Debian-like systems; skip the check where it does not exist.
    let Some(gid) = group_gid_from_etc("daemon") else {
        eprintln!("SKIP (no group named daemon)");
        return;
    };
    let server = within(Server::bind(
        &path,
        SocketPerms {
            group: Some(SocketGroup::parse("daemon")),
        },
    ))
    .await
    .unwrap();
    assert_eq!(std::fs::symlink_metadata(&path).unwrap().gid(), gid);
    drop(server);
}

fn group_gid_from_etc(name: &str) -> Option<u32> {
    let groups = std::fs::read_to_string("/etc/group").ok()?;
    groups.lines().find_map(|line| {
        let mut fields = line.split(':');
        (fields.next()? == name).then(|| fields.nth(1)?.parse().ok())?
    })
}

#[tokio::test]
async fn a_live_socket_is_not_clobbered_by_a_second_bind() {
    let (_dir, path) = socket_path();
    let daemon = TestDaemon::start(path.clone(), EventBus::default()).await;
    let ino = std::fs::symlink_metadata(&path).unwrap().ino();

    let err = within(Server::bind(&path, SocketPerms::default()))
        .await
        .unwrap_err();
    assert!(matches!(err, CtlError::SocketInUse { .. }), "{err:?}");
    assert!(err.to_string().contains(&*path.to_string_lossy()));

    assert_eq!(std::fs::symlink_metadata(&path).unwrap().ino(), ino);
    let client = within(Client::connect(&path)).await.unwrap();
    assert_eq!(
        within(client.request(methods::PING, Value::Null))
            .await
            .unwrap(),
        json!("pong")
    );
    daemon.stop().await;
}

#[tokio::test]
async fn a_stale_socket_is_replaced() {
    let (_dir, path) = socket_path();
    // A socket whose daemon died: the file stays, nobody listens.
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    assert!(std::fs::symlink_metadata(&path)
        .unwrap()
        .file_type()
        .is_socket());

    let daemon = TestDaemon::start(path.clone(), EventBus::default()).await;
    let client = within(Client::connect(&path)).await.unwrap();
    assert_eq!(
        within(client.request(methods::PING, Value::Null))
            .await
            .unwrap(),
        json!("pong")
    );
    daemon.stop().await;
}

#[tokio::test]
async fn a_file_that_is_not_a_socket_is_refused_and_kept() {
    let (_dir, path) = socket_path();
    std::fs::write(&path, b"precious").unwrap();
    let err = within(Server::bind(&path, SocketPerms::default()))
        .await
        .unwrap_err();
    assert!(matches!(err, CtlError::NotASocket { .. }), "{err:?}");
    assert_eq!(std::fs::read(&path).unwrap(), b"precious");
}

#[tokio::test]
async fn a_missing_parent_directory_is_created_0755() {
    let dir = tempfile::tempdir().unwrap();
    let parent = dir.path().join("run").join("lbsuite");
    let path = parent.join("vrrpd.sock");
    let daemon = TestDaemon::start(path.clone(), EventBus::default()).await;
    assert_eq!(
        std::fs::metadata(&parent).unwrap().permissions().mode() & 0o777,
        0o755
    );
    let client = within(Client::connect(&path)).await.unwrap();
    assert_eq!(
        within(client.request(methods::PING, Value::Null))
            .await
            .unwrap(),
        json!("pong")
    );
    daemon.stop().await;
}

#[tokio::test]
async fn shutdown_does_not_remove_a_socket_that_replaced_ours() {
    let (_dir, path) = socket_path();
    let first = TestDaemon::start(path.clone(), EventBus::default()).await;
    // Someone removes our socket and a new daemon binds the path.
    std::fs::remove_file(&path).unwrap();
    let second = TestDaemon::start(path.clone(), EventBus::default()).await;
    first.stop().await;
    assert!(
        path.exists(),
        "the first daemon removed the second one's socket"
    );
    let client = within(Client::connect(&path)).await.unwrap();
    assert_eq!(
        within(client.request(methods::PING, Value::Null))
            .await
            .unwrap(),
        json!("pong")
    );
    second.stop().await;
}
