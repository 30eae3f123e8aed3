//! `imagetool config-drive`: the tree coreos-cloudinit reads, checked with python's json module
//! and ssh-keygen.

mod support;

use std::path::Path;

use support::*;

fn p(dir: &Path, name: &str) -> String {
    dir.join(name).to_string_lossy().into_owned()
}

fn keys(d: &Path) {
    sh(
        d,
        "ssh-keygen -q -t ed25519 -N '' -C alice@laptop -f ed && ssh-keygen -q -t rsa -b 2048 -N '' -C bob -f rsa \
         && ssh-keygen -q -t ecdsa -N '' -C alice@laptop -f ec && cat rsa.pub ec.pub > two.pub",
    );
}

#[test]
fn writes_the_tree_cloudinit_reads() {
    let t = tempdir();
    let d = t.path();
    keys(d);
    sh(
        d,
        "printf '#cloud-config\\nusers:\\n  - name: core\\n    groups: [sudo]\\n' > ud.yaml",
    );
    let uuid = "6f1c0e52-3c4b-4e0c-9a7e-0d2f7f3b2a11";
    let run = imagetool(&[
        "config-drive",
        "-o",
        &p(d, "drive"),
        "--hostname",
        "core-1",
        "--ssh-key",
        &p(d, "ed.pub"),
        "--ssh-key",
        &p(d, "two.pub"),
        "--user-data",
        &p(d, "ud.yaml"),
        "--uuid",
        uuid,
    ]);
    run.ok();
    sh(d, "cmp ud.yaml drive/openstack/latest/user_data");
    // python's json module is the independent reader; coreos-cloudinit reads these three keys.
    let facts = sh(
        d,
        "python3 -c 'import json,sys; m=json.load(open(\"drive/openstack/latest/meta_data.json\")); \
         print(m[\"hostname\"]); print(m[\"uuid\"]); [print(k, v) for k, v in sorted(m[\"public_keys\"].items())]'",
    );
    let lines: Vec<&str> = facts.lines().collect();
    assert_eq!(lines[0], "core-1");
    assert_eq!(lines[1], uuid);
    assert_eq!(lines.len(), 5, "three keys expected: {facts}");
    // Each stored key is the one ssh-keygen made, under a unique name.
    for pubfile in ["ed.pub", "rsa.pub", "ec.pub"] {
        let key = std::fs::read_to_string(d.join(pubfile)).expect("read key");
        assert!(facts.contains(key.trim()), "{pubfile} missing from {facts}");
    }
    assert!(
        facts.contains("alice@laptop ")
            && facts.contains("alice@laptop-2 ")
            && facts.contains("bob "),
        "{facts}"
    );
    sh(
        d,
        "python3 -c 'import json; [print(v) for v in json.load(open(\"drive/openstack/latest/meta_data.json\"))[\"public_keys\"].values()]' > k && ssh-keygen -l -f k >/dev/null",
    );
    assert_only(&d.join("drive"), &["openstack"]);
}

#[test]
fn rewrites_atomically_and_keeps_ignition_beside_the_tree() {
    let t = tempdir();
    let d = t.path();
    sh(
        d,
        "printf '#!/bin/sh\\necho hi\\n' > script && echo '{\"ignition\":{\"version\":\"3.4.0\"},\"systemd\":{}}' > c.ign",
    );
    imagetool(&[
        "config-drive",
        "-o",
        &p(d, "drive"),
        "--hostname",
        "a",
        "--user-data",
        &p(d, "script"),
        "--ignition",
        &p(d, "c.ign"),
    ])
    .ok();
    sh(
        d,
        "cmp script drive/openstack/latest/user_data && cmp c.ign drive/config.ign",
    );
    // Keep a handle on the old tree: after the rewrite it must be gone, not mixed with the new one.
    let old_meta =
        std::fs::read_to_string(d.join("drive/openstack/latest/meta_data.json")).expect("read");
    let run = imagetool(&["config-drive", "-o", &p(d, "drive"), "--hostname", "b"]);
    run.ok();
    let new_meta =
        std::fs::read_to_string(d.join("drive/openstack/latest/meta_data.json")).expect("read");
    assert_ne!(old_meta, new_meta);
    assert!(new_meta.contains("\"b\""));
    assert!(
        !d.join("drive/openstack/latest/user_data").exists(),
        "stale user_data survived the rewrite"
    );
    assert!(
        !d.join("drive/config.ign").exists(),
        "stale Ignition config survived the rewrite"
    );
    assert_only(&d.join("drive"), &["openstack"]);
}

#[test]
fn bad_inputs_fail_cleanly() {
    let t = tempdir();
    let d = t.path();
    keys(d);
    sh(
        d,
        "echo 'ssh-ed25519 AAAAnotbase64!! x' > bad.pub && cp ed bad-private.pub && : > empty.pub \
         && printf '#cloud-config\\nusers: [unclosed\\n' > bad.yaml && printf 'hello\\n' > plain.txt \
         && echo '{\"ignition\":{\"version\":\"3.4.0\"}}' > ign-as-userdata \
         && echo '{\"ignition\":{\"version\":\"9.9.9\"}}' > future.ign && echo 'variant: flatcar' > butane.yaml \
         && echo '{not json' > broken.ign && mkdir drive2 && ln -s /tmp drive2/openstack",
    );
    let drive = p(d, "drive");
    let cases: Vec<(Vec<String>, Vec<&str>)> = vec![
        (
            vec!["--hostname".into(), "bad_name".into()],
            vec!["invalid hostname", "bad_name"],
        ),
        (vec!["--hostname=-x".into()], vec!["invalid hostname"]),
        (
            vec![
                "--hostname".into(),
                "a".into(),
                "--ssh-key".into(),
                p(d, "bad.pub"),
            ],
            vec!["ssh key 1", "not an OpenSSH public key"],
        ),
        (
            vec![
                "--hostname".into(),
                "a".into(),
                "--ssh-key".into(),
                p(d, "bad-private.pub"),
            ],
            vec!["not an OpenSSH public key"],
        ),
        (
            vec![
                "--hostname".into(),
                "a".into(),
                "--ssh-key".into(),
                p(d, "empty.pub"),
            ],
            vec!["holds no key"],
        ),
        (
            vec![
                "--hostname".into(),
                "a".into(),
                "--ssh-key".into(),
                p(d, "missing.pub"),
            ],
            vec!["cannot read ssh key file"],
        ),
        (
            vec![
                "--hostname".into(),
                "a".into(),
                "--user-data".into(),
                p(d, "bad.yaml"),
            ],
            vec!["not valid YAML", "line"],
        ),
        (
            vec![
                "--hostname".into(),
                "a".into(),
                "--user-data".into(),
                p(d, "plain.txt"),
            ],
            vec!["#cloud-config or #!"],
        ),
        (
            vec![
                "--hostname".into(),
                "a".into(),
                "--user-data".into(),
                p(d, "ign-as-userdata"),
            ],
            vec!["--ignition"],
        ),
        (
            vec![
                "--hostname".into(),
                "a".into(),
                "--ignition".into(),
                p(d, "future.ign"),
            ],
            vec!["9.9.9"],
        ),
        (
            vec![
                "--hostname".into(),
                "a".into(),
                "--ignition".into(),
                p(d, "butane.yaml"),
            ],
            vec!["butane"],
        ),
        (
            vec![
                "--hostname".into(),
                "a".into(),
                "--ignition".into(),
                p(d, "broken.ign"),
            ],
            vec!["not valid JSON"],
        ),
    ];
    for (args, fragments) in cases {
        let mut full = vec!["config-drive".to_string(), "-o".into(), drive.clone()];
        full.extend(args);
        let refs: Vec<&str> = full.iter().map(String::as_str).collect();
        imagetool(&refs).fails_with(&fragments);
        assert!(!d.join("drive").exists(), "{full:?} left a drive behind");
    }
    // A symlink where the tree goes would let a rewrite reach outside the drive.
    imagetool(&["config-drive", "-o", &p(d, "drive2"), "--hostname", "a"])
        .fails_with(&["symlink", "refusing"]);
    assert_only(&d.join("drive2"), &["openstack"]);
    assert!(
        std::fs::symlink_metadata(d.join("drive2/openstack"))
            .expect("lstat")
            .file_type()
            .is_symlink()
    );
}
