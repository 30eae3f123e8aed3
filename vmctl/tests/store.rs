//! The content-addressed image store: one copy of each image for every cluster, read-only;
//! what a PXE initrd holds besides /usr kept as a small initrd of its own.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use common::{Env, kernel_stub, pxe_initrd};

fn blobs(env: &Env) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(env.home.join("images/blobs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

fn images(env: &Env, cluster: &str) -> serde_json::Value {
    serde_json::from_slice(
        &std::fs::read(env.home.join(format!("clusters/{cluster}/images.json"))).unwrap(),
    )
    .unwrap()
}

fn sha256(path: &std::path::Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().unwrap();
    String::from_utf8(out.stdout)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

#[test]
fn two_clusters_share_one_store_entry() {
    let env = Env::new();
    let img = env.work.join("img");
    std::fs::create_dir_all(&img).unwrap();
    kernel_stub(&img.join("vmlinuz"));
    let (initrd, squash) = pxe_initrd(&img, "shared", false);
    for name in ["one", "two"] {
        std::fs::write(
            env.work.join(format!("{name}.yaml")),
            format!(
                "name: {name}\nimage: {{ kernel: img/vmlinuz, initrd: {} }}\nnetwork: {{ mode: user }}\n\
                 defaults: {{ memory: 256, root_size: 64M }}\nnodes: [{{ name: core, count: 2 }}]\n",
                initrd.display()
            ),
        )
        .unwrap();
        env.ok(&["up", name, "--no-wait"]);
    }
    // One kernel and one /usr for four VMs in two clusters; nothing else, since the archive
    // holds only directories besides usr.squashfs.
    let b = blobs(&env);
    assert_eq!(
        b,
        {
            let mut want = vec![
                format!("sha256-{}", sha256(&img.join("vmlinuz"))),
                format!("sha256-{}", sha256(&squash)),
            ];
            want.sort();
            want
        },
        "the store is keyed by each file's sha256sum"
    );
    assert_eq!(images(&env, "one"), images(&env, "two"));
    let usr = images(&env, "one")["usr"].as_str().unwrap().to_string();
    // Byte for byte the squashfs that went into the archive, and read-only.
    assert!(
        Command::new("cmp")
            .arg(&usr)
            .arg(&squash)
            .status()
            .unwrap()
            .success()
    );
    assert_eq!(
        std::fs::metadata(&usr).unwrap().permissions().mode() & 0o777,
        0o444
    );
    // Every VM's VMM got that same file, read-only.
    for (c, n) in [("one", "core-1"), ("two", "core-2")] {
        let args = std::fs::read_to_string(env.node_dir(c, n).join("vmm.args")).unwrap();
        assert!(
            args.contains(&format!("path={usr},readonly=on,serial=usr")),
            "{args}"
        );
        assert!(!args.contains("--initrd"), "{args}");
    }
    env.ok(&["down", "-c", "one"]);
    env.ok(&["down", "-c", "two"]);
}

#[test]
fn the_rest_of_a_pxe_initrd_becomes_a_small_initrd() {
    let env = Env::new();
    let img = env.work.join("img");
    std::fs::create_dir_all(&img).unwrap();
    kernel_stub(&img.join("vmlinuz"));
    let (initrd, _) = pxe_initrd(&img, "oem", true);
    std::fs::write(
        env.work.join("oem.yaml"),
        format!(
            "name: oem\nimage: {{ kernel: img/vmlinuz, initrd: {} }}\nnetwork: {{ mode: user }}\n\
             defaults: {{ memory: 256, root_size: 64M }}\nnodes: [{{ name: a }}]\n",
            initrd.display()
        ),
    )
    .unwrap();
    env.ok(&["up", "oem", "--no-wait"]);
    let rest = images(&env, "oem")["initrd"].as_str().unwrap().to_string();
    // bsdcpio lists it: everything but the squashfs, the appended oem archive included.
    let out = Command::new("bsdcpio")
        .args(["-it", "-F"])
        .arg(&rest)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let list = String::from_utf8(out.stdout).unwrap();
    assert!(
        list.lines().any(|l| l == "usr/share/oem/config.ign"),
        "{list}"
    );
    assert!(!list.contains("usr.squashfs"), "{list}");
    let size = std::fs::metadata(&rest).unwrap().len();
    assert!(size < 4096, "the rest is small: {size} bytes");
    // Passed to the VMM where guests run user space; left out where they cannot (PVM hosts).
    let args = std::fs::read_to_string(env.node_dir("oem", "a").join("vmm.args")).unwrap();
    assert_eq!(
        args.contains(&format!("--initrd\n{rest}\n")),
        common::host_has_vmx_or_svm(),
        "{args}"
    );
    env.ok(&["down"]);
}
