//! The `sh` blocks of docs/export-import.md run, in order, in one empty directory: the usage doc
//! shows commands that work.

mod support;

use support::sparse::*;

/// The bodies of the fenced blocks whose info string is exactly `sh`.
fn sh_blocks(markdown: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in markdown.lines() {
        match (&mut current, line.trim_end()) {
            (None, "```sh") => current = Some(String::new()),
            (Some(_), "```") => blocks.extend(current.take()),
            (Some(body), _) => {
                body.push_str(line);
                body.push('\n');
            }
            (None, _) => {}
        }
    }
    assert!(current.is_none(), "unclosed code block");
    blocks
}

#[test]
fn usage_doc_commands_run() {
    let doc = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/export-import.md");
    let text = std::fs::read_to_string(doc).expect("read docs/export-import.md");
    let blocks = sh_blocks(&text);
    assert!(
        blocks.len() >= 3,
        "expected several sh blocks, found {}",
        blocks.len()
    );
    let t = tempdir();
    let d = t.path();
    for block in &blocks {
        let run = sh_run(d, block);
        assert_eq!(
            run.status, 0,
            "this block of {doc} failed:\n{block}\nstderr: {}",
            run.stderr
        );
    }
    // The doc's promises about the results, checked with du and cmp.
    assert!(allocated(d, "copy.img") <= allocated(d, "disk.img"));
    assert!(allocated(d, "from-plain.img") <= allocated(d, "disk.img") + 4096);
    assert_eq!(apparent(d, "from-plain.img"), 1 << 30);
}

#[test]
fn block_extraction() {
    let md = "text\n```sh\na\nb\n```\n```text\nnot run\n```\n```sh\nc\n```\n";
    assert_eq!(sh_blocks(md), vec!["a\nb\n".to_string(), "c\n".to_string()]);
}
