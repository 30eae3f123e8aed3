//! Broken cluster files: each fails with one line naming the file, the line and the column, and
//! leaves no state behind.

mod common;

use common::{Env, kernel_stub};

fn setup() -> Env {
    let env = Env::new();
    kernel_stub(&env.work.join("vmlinuz"));
    env
}

/// Writes FILE and runs `vmctl up FILE --no-wait`; returns the error line.
fn error_for(env: &Env, text: &str) -> String {
    let file = env.work.join("c.yaml");
    std::fs::write(&file, text).unwrap();
    let err = env.fails(&["up", "c.yaml", "--no-wait"]);
    assert!(
        !env.home.join("clusters").exists(),
        "a broken file must leave no state: {err}"
    );
    err
}

fn at(env: &Env, line: usize, col: usize) -> String {
    format!(
        "vmctl: {}:{line}:{col}: ",
        env.work.join("c.yaml").display()
    )
}

const HEAD: &str = "name: c\nimage: { kernel: vmlinuz }\nnetwork: { mode: user }\n";

#[test]
fn syntax_error_has_line_and_column() {
    let env = setup();
    let err = error_for(&env, "name: c\nimage:\n  kernel: vmlinuz\n nodes: []\n");
    assert!(
        err.starts_with(&format!("vmctl: {}:4:", env.work.join("c.yaml").display())),
        "{err}"
    );
}

#[test]
fn unknown_key_is_rejected_where_it_is() {
    let env = setup();
    let err = error_for(&env, &format!("{HEAD}nodes:\n  - name: core\n    cpu: 2\n"));
    assert!(err.starts_with(&at(&env, 6, 5)), "{err}");
    assert!(err.contains("unknown field `cpu`"), "{err}");
    assert!(
        err.contains("cpus"),
        "the message lists the known fields: {err}"
    );
}

#[test]
fn invalid_node_name() {
    let env = setup();
    let err = error_for(&env, &format!("{HEAD}nodes:\n  - {{ name: Core_1 }}\n"));
    assert!(err.starts_with(&at(&env, 5, 13)), "{err}");
    assert!(err.contains("not a valid name"), "{err}");
}

#[test]
fn duplicate_names_after_count_expansion() {
    let env = setup();
    let err = error_for(
        &env,
        &format!("{HEAD}nodes:\n  - {{ name: core, count: 3 }}\n  - name: core-2\n"),
    );
    assert!(err.starts_with(&at(&env, 6, 11)), "{err}");
    assert!(err.contains("core-2 is used twice"), "{err}");
}

#[test]
fn subnet_too_small_for_the_nodes() {
    let env = setup();
    let err = error_for(
        &env,
        "name: c\nimage: { kernel: vmlinuz }\nnetwork:\n  mode: bridge\n  subnet: 10.9.0.0/30\nnodes:\n  - { name: core, count: 3 }\n",
    );
    assert!(err.starts_with(&at(&env, 5, 11)), "{err}");
    assert!(err.contains("room for 1 node"), "{err}");
}

#[test]
fn bad_values_point_at_themselves() {
    let env = setup();
    let err = error_for(
        &env,
        &format!("{HEAD}defaults: {{ memory: 12 }}\nnodes: [{{ name: a }}]\n"),
    );
    assert!(err.starts_with(&at(&env, 4, 21)), "{err}");
    let err = error_for(
        &env,
        "name: c\nimage: { kernel: vmlinuz }\nnetwork: { mode: bridge, subnet: 10.9.0.1/24 }\nnodes: [{ name: a }]\n",
    );
    assert!(err.starts_with(&at(&env, 3, 34)), "{err}");
    assert!(err.contains("host bits"), "{err}");
}

#[test]
fn missing_image_file() {
    let env = setup();
    let err = error_for(
        &env,
        "name: c\nimage:\n  kernel: vmlinuz\n  initrd: nope.cpio.gz\nnetwork: { mode: user }\nnodes: [{ name: a }]\n",
    );
    assert!(err.starts_with(&at(&env, 4, 11)), "{err}");
    assert!(
        err.contains(&format!(
            "{}: no such file",
            env.work.join("nope.cpio.gz").display()
        )),
        "{err}"
    );
}

#[test]
fn a_kernel_that_is_not_a_kernel() {
    let env = setup();
    std::fs::write(env.work.join("notakernel"), "hello").unwrap();
    let err = error_for(
        &env,
        "name: c\nimage: { kernel: notakernel }\nnetwork: { mode: user }\nnodes: [{ name: a }]\n",
    );
    assert!(err.starts_with(&at(&env, 2, 18)), "{err}");
    assert!(err.contains("is not a Linux kernel"), "{err}");
}

#[test]
fn bridge_mode_needs_a_subnet_and_no_nodes_is_an_error() {
    let env = setup();
    let err = error_for(
        &env,
        "name: c\nimage: { kernel: vmlinuz }\nnetwork: { mode: bridge }\nnodes: [{ name: a }]\n",
    );
    assert!(err.contains("needs a subnet"), "{err}");
    let err = error_for(&env, &format!("{HEAD}nodes: []\n"));
    assert!(err.starts_with(&at(&env, 4, 8)), "{err}");
    assert!(err.contains("no nodes"), "{err}");
}

#[test]
fn no_such_cluster_names_where_it_looked() {
    let env = setup();
    let err = env.fails(&["up", "ghost"]);
    assert!(
        err.contains("./ghost.yaml") || err.contains("ghost.yaml"),
        "{err}"
    );
    assert!(
        err.contains("configs/ghost.yaml") && err.contains("/etc/vmctl/ghost.yaml"),
        "{err}"
    );
}
