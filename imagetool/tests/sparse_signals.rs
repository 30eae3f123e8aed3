//! A reader that goes away, and SIGINT/SIGTERM in the middle of a run: a one-line error or the
//! signal's exit status, and no partial output of any kind left behind.

mod support;

use std::io::{Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, Command, Stdio};

use support::sparse::*;

fn signal(child: &Child, sig: &str) {
    let status = Command::new("kill")
        .args([&format!("-{sig}"), &child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success());
}

#[test]
fn a_reader_that_goes_away_is_a_one_line_error_and_leaves_no_digest() {
    let t = tempdir();
    let d = t.path();
    sh(d, "head -c 16M /dev/urandom > img && truncate -s 64M img");
    let before = entries(d);
    let mut child = spawn(
        d,
        &["export", "img", "-o", "-", "--digest", "img.sha256"],
        Stdio::null(),
        Stdio::piped(),
    );
    let mut out = child.stdout.take().expect("stdout");
    let mut first = [0u8; 4096];
    out.read_exact(&mut first).expect("the stream starts");
    drop(out);
    let output = child.wait_with_output().expect("wait");
    let run = finish(output);
    run.fails_with(&["closed by its reader", "broken pipe"]);
    nothing_left(d, &before);
}

#[test]
fn sigint_and_sigterm_during_import_leave_nothing() {
    let t = tempdir();
    let d = t.path();
    sh(
        d,
        "head -c 8M /dev/urandom > img && truncate -s 64M img && imagetool export img -o img.gz",
    );
    let stream = std::fs::read(d.join("img.gz")).unwrap();
    for sig in ["INT", "TERM"] {
        let before = entries(d);
        let mut child = spawn(
            d,
            &["import", "-", "-o", "back.img"],
            Stdio::piped(),
            Stdio::null(),
        );
        let mut input = child.stdin.take().expect("stdin");
        // Half the stream, then the pipe stays open: the import is mid-way, waiting for more.
        input.write_all(&stream[..stream.len() / 2]).unwrap();
        wait_for_part(d, "back.img");
        signal(&child, sig);
        let status = child.wait().expect("wait");
        drop(input);
        let expected = if sig == "INT" { 2 } else { 15 };
        assert!(
            status.signal() == Some(expected) || status.code() == Some(128 + expected),
            "SIG{sig}: {status:?}"
        );
        nothing_left(d, &before);
    }
}

#[test]
fn sigint_during_export_leaves_nothing() {
    let t = tempdir();
    let d = t.path();
    sh(d, "head -c 16M /dev/urandom > img && truncate -s 64M img");
    let before = entries(d);
    // Nobody reads the stream, so the export blocks once the pipe is full, digest file pending.
    let mut child = spawn(
        d,
        &["export", "img", "-o", "-", "--digest", "img.sha256"],
        Stdio::null(),
        Stdio::piped(),
    );
    wait_for_part(d, "img.sha256");
    signal(&child, "INT");
    let status = child.wait().expect("wait");
    assert!(
        status.signal() == Some(2) || status.code() == Some(130),
        "{status:?}"
    );
    nothing_left(d, &before);
}
