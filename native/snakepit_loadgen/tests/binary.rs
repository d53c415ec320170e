//! The `snakepit_loadgen` binary: the LISTENING line, the ways it shuts
//! down (all with exit code 0) and its help.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn spawn(args: &[&str]) -> (Child, u16) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_snakepit_loadgen"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port = line
        .strip_prefix("LISTENING ")
        .and_then(|p| p.trim_end().parse().ok())
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"));
    (child, port)
}

fn wait_success(child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "{status}");
            let mut rest = String::new();
            child
                .stdout
                .as_mut()
                .unwrap()
                .read_to_string(&mut rest)
                .unwrap();
            assert_eq!(rest, "", "stdout has more than the LISTENING line");
            return;
        }
        assert!(Instant::now() < deadline, "did not exit");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn prints_the_port_and_exits_0_when_stdin_closes() {
    let (mut child, port) = spawn(&["--listen", "127.0.0.1:0"]);
    assert!(port > 0);
    std::net::TcpStream::connect(("127.0.0.1", port)).expect("not listening");
    drop(child.stdin.take());
    wait_success(&mut child);
}

#[test]
fn exits_0_on_sigterm() {
    let (mut child, _) = spawn(&["--ignore-stdin"]);
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    wait_success(&mut child);
}

#[test]
fn exits_0_when_the_duration_elapses() {
    let (mut child, _) = spawn(&["--duration-s", "0.2", "--ignore-stdin"]);
    wait_success(&mut child);
}

#[test]
fn help_documents_every_flag() {
    let out = Command::new(env!("CARGO_BIN_EXE_snakepit_loadgen"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for flag in [
        "--listen",
        "--rate",
        "--total",
        "--batch",
        "--queue-size",
        "--stock-only",
        "--invalid-ratio",
        "--duration-s",
        "--ignore-stdin",
        "--seed",
    ] {
        assert!(help.contains(flag), "{flag} missing from --help");
    }
}

#[test]
fn a_bad_flag_fails() {
    let out = Command::new(env!("CARGO_BIN_EXE_snakepit_loadgen"))
        .args(["--rate", "-3"])
        .output()
        .unwrap();
    assert!(!out.status.success());
}
