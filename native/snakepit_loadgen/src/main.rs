//! `snakepit_loadgen`: binds, prints `LISTENING <port>`, serves until stdin
//! closes, SIGTERM/SIGINT or `--duration-s`, exits 0 after a clean shutdown.

use std::io::{Read, Write};
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use snakepit_loadgen::cli::Args;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(&format!("cannot start the tokio runtime: {e}")),
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e),
    }
}

fn fail(message: &str) -> ExitCode {
    eprintln!("loadgen: {message}");
    ExitCode::FAILURE
}

async fn run(args: Args) -> Result<(), String> {
    let config = args.config();
    config.validate()?;
    let listener = TcpListener::bind(args.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
    let port = listener.local_addr().map_err(|e| e.to_string())?.port();
    // Handlers first: a launcher may signal as soon as it reads the port.
    let signals = Signals::install().map_err(|e| format!("cannot install signal handlers: {e}"))?;
    let stdin_closed = (!args.ignore_stdin).then(watch_stdin);
    announce(port)?;
    let shutdown = shutdown_signal(args.duration_s, stdin_closed, signals);
    snakepit_loadgen::serve(listener, config, shutdown).await?;
    Ok(())
}

/// The one line on stdout that launchers wait for.
fn announce(port: u16) -> Result<(), String> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "LISTENING {port}")
        .and_then(|()| out.flush())
        .map_err(|e| format!("cannot write to stdout: {e}"))
}

/// Completes when stdin reaches EOF. A plain thread, not tokio's stdin: a
/// blocking read there would hold up runtime shutdown.
fn watch_stdin() -> oneshot::Receiver<()> {
    let (tx, rx) = oneshot::channel();
    std::thread::spawn(move || {
        let mut buf = [0u8; 1024];
        let mut stdin = std::io::stdin().lock();
        while matches!(stdin.read(&mut buf), Ok(n) if n > 0) {}
        let _ = tx.send(());
    });
    rx
}

async fn shutdown_signal(
    duration_s: f64,
    stdin_closed: Option<oneshot::Receiver<()>>,
    mut signals: Signals,
) {
    let stdin = async {
        match stdin_closed {
            Some(rx) => {
                let _ = rx.await;
            }
            None => std::future::pending().await,
        }
    };
    let deadline = async {
        if duration_s > 0.0 {
            tokio::time::sleep(Duration::from_secs_f64(duration_s)).await;
        } else {
            std::future::pending::<()>().await;
        }
    };
    let why = tokio::select! {
        _ = stdin => "stdin closed",
        _ = deadline => "duration elapsed",
        why = signals.recv() => why,
    };
    eprintln!("loadgen: shutting down ({why})");
}

/// SIGTERM and SIGINT, registered up front.
#[cfg(unix)]
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

#[cfg(unix)]
impl Signals {
    fn install() -> std::io::Result<Signals> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
        }
    }
}

#[cfg(not(unix))]
struct Signals;

#[cfg(not(unix))]
impl Signals {
    fn install() -> std::io::Result<Signals> {
        Ok(Signals)
    }

    async fn recv(&mut self) -> &'static str {
        let _ = tokio::signal::ctrl_c().await;
        "Ctrl-C"
    }
}
