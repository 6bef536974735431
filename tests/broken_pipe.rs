//! Every subcommand stops quietly when the reader of its stdout goes away early, as in
//! `fluxgate mutate -f x.yaml -o json | head`: status 0 and nothing on stderr, not
//! `error: Broken pipe`.

use std::io::Read as _;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Far more than a pipe holds (64 KiB by default, 1 MiB at most unprivileged), so the writer is
/// still writing when the reader leaves.
const LARGE_OUTPUT: usize = 1 << 20;

fn spawn(args: &[&str], dir: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_fluxgate"))
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("fluxgate runs")
}

/// Waits for `child` at most 60 s.
fn wait(child: &mut Child) -> ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if start.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            panic!("fluxgate still running 60 s after its reader left");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn stderr(child: &mut Child) -> String {
    let mut text = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut text)
        .unwrap();
    text
}

/// Runs `args` with a reader that takes `read` bytes, then closes the pipe.
fn closed_after(args: &[&str], dir: &Path, read: usize) -> (ExitStatus, String) {
    let mut child = spawn(args, dir);
    let mut stdout = child.stdout.take().unwrap();
    let mut head = vec![0; read];
    stdout.read_exact(&mut head).unwrap();
    drop(stdout);
    let status = wait(&mut child);
    (status, stderr(&mut child))
}

/// The whole output of `args`, read to the end.
fn full_output(args: &[&str], dir: &Path) -> Vec<u8> {
    let out = Command::new(env!("CARGO_BIN_EXE_fluxgate"))
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// `n` failing GitRepositories, each in its own namespace, as the List
/// `kubectl get gitrepositories -A -o json` prints (which `mutate` reads too).
fn write_list(path: &Path, n: usize) {
    let items: Vec<_> = (0..n)
        .map(|i| {
            serde_json::json!({
                "apiVersion": "source.toolkit.fluxcd.io/v1",
                "kind": "GitRepository",
                "metadata": {
                    "name": format!("project-{i}"),
                    "namespace": format!("proj-{i}"),
                    "uid": format!("uid-{i}"),
                    "generation": 1,
                    "creationTimestamp": "2026-09-01T00:00:00Z",
                },
                "spec": {
                    "interval": "1m",
                    "timeout": "60s",
                    "url": format!("https://github.com/example-org/project-{i}"),
                    "ref": { "branch": "main" },
                },
                "status": {
                    "observedGeneration": 1,
                    "conditions": [{
                        "type": "Ready", "status": "False", "reason": "GitOperationFailed",
                        "message": "failed to checkout and determine revision: unable to clone: context deadline exceeded",
                        "lastTransitionTime": "2026-10-01T00:00:00Z",
                    }],
                },
            })
        })
        .collect();
    let list = serde_json::json!({ "apiVersion": "v1", "kind": "List", "items": items });
    std::fs::write(path, serde_json::to_vec(&list).unwrap()).unwrap();
}

#[test]
fn a_reader_closing_early_ends_every_output_quietly() {
    let dir = tempfile::tempdir().unwrap();
    write_list(&dir.path().join("list.json"), 6000);
    let now = "2026-11-28T12:00:00Z";
    let with = |args: &[&'static str]| [args, &["-f", "list.json", "--now", now]].concat();
    for args in [
        with(&["mutate", "-o", "json"]),
        with(&["mutate", "-o", "yaml"]),
        with(&["mutate", "-o", "patch"]),
        with(&["report", "-o", "json"]),
    ] {
        let args = &args[..];
        let whole = full_output(args, dir.path()).len();
        assert!(whole > LARGE_OUTPUT, "{args:?}: only {whole} bytes");
        let (status, stderr) = closed_after(args, dir.path(), 100);
        assert_eq!(
            status.code(),
            Some(0),
            "{args:?}: {status}, stderr: {stderr}"
        );
        assert_eq!(stderr, "", "{args:?}");
    }
}

#[test]
fn a_reader_gone_before_the_first_write_is_quiet_too() {
    let dir = tempfile::tempdir().unwrap();
    // `certs` writes a few lines after generating keys; the reader is gone by then.
    let mut child = spawn(&["certs", "--out", "pki"], dir.path());
    drop(child.stdout.take());
    let status = wait(&mut child);
    let stderr = stderr(&mut child);
    assert_eq!(status.code(), Some(0), "{status}, stderr: {stderr}");
    assert_eq!(stderr, "");
    assert!(
        dir.path().join("pki/tls.crt").exists(),
        "the work is still done"
    );
}

#[test]
fn other_errors_still_fail_loudly() {
    let dir = tempfile::tempdir().unwrap();
    let (status, stderr) = {
        let mut child = spawn(&["mutate", "-f", "missing.yaml"], dir.path());
        let status = wait(&mut child);
        (status, stderr(&mut child))
    };
    assert_eq!(status.code(), Some(1));
    assert!(stderr.starts_with("error: "), "{stderr}");
}
