//! The container image (`scripts/image --from`, which ./scripts/test packs first from the static
//! binaries it built for the tests):
//! unpacked with umoci as a runtime would, then the embedded demo run inside it, chrooted, as
//! the image's own user — producer → consumer → query — with nothing from the host but the
//! seed CSVs copied in. The four tools are one multi-call binary, `kappa-lake`, behind links.

use std::path::{Path, PathBuf};
use std::process::Command;

use kappa_tests::{expect_status, run, workspace_root};

fn image_archive() -> PathBuf {
    let version = env!("CARGO_PKG_VERSION");
    let archive = workspace_root().join(format!("dist/kappa-lake-{version}-ci.oci.tar"));
    assert!(archive.exists(), "{} is missing: ./scripts/test packs it (`scripts/image --from target/x86_64-unknown-linux-musl/debug`)", archive.display());
    archive
}

fn root() -> bool {
    // `id -u` rather than libc: the workspace denies unsafe code.
    String::from_utf8(run(Command::new("id").arg("-u")).stdout).unwrap().trim() == "0"
}

/// A command run inside `rootfs` as `user` (chroot needs root; without it, an unprivileged
/// user namespace maps this user to root, and the image's user cannot be taken).
fn inside(rootfs: &Path, user: &str, args: &[&str]) -> Command {
    let mut command = match root() {
        true => {
            let mut c = Command::new("chroot");
            c.arg(format!("--userspec={user}"));
            c
        }
        false => {
            let mut c = Command::new("unshare");
            c.args(["--map-root-user", "chroot"]);
            c
        }
    };
    // Nothing of the host's environment but where chroot itself is found.
    command.arg(rootfs).args(args).env_clear().env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin").env("KAPPA_LOG", "info").env("HOME", "/tmp");
    command
}

#[test]
fn the_image_runs_the_embedded_demo_as_its_own_user() {
    let archive = image_archive();
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    std::fs::create_dir_all(&layout).unwrap();
    expect_status(&run(Command::new("tar").arg("-xf").arg(&archive).arg("-C").arg(&layout)), 0);
    let bundle = dir.path().join("bundle");
    let mut unpack = Command::new("umoci");
    unpack.arg("unpack");
    if !root() {
        unpack.arg("--rootless");
    }
    let reference = format!("{}:kappa-lake:{}", layout.display(), env!("CARGO_PKG_VERSION"));
    expect_status(&run(unpack.arg("--image").arg(&reference).arg(&bundle)), 0);

    // What a runtime reads: the user, the working directory, the CA bundle for TLS.
    let config: serde_json::Value = serde_json::from_slice(&std::fs::read(bundle.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["process"]["user"]["uid"], 65532, "{:#}", config["process"]);
    assert_eq!(config["process"]["cwd"], "/tmp");
    assert!(config["process"]["env"].as_array().unwrap().iter().any(|e| e == "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"));
    let rootfs = bundle.join("rootfs");
    let mut entries: Vec<String> = std::fs::read_dir(&rootfs).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    entries.sort();
    assert_eq!(entries, ["etc", "kappa-consumer", "kappa-lake", "kappa-producer", "kappa-query", "kappa-replay", "tmp"], "FROM scratch: nothing else");
    // One binary; the tools' names are links to it, and the name started picks the tool.
    for tool in ["kappa-consumer", "kappa-producer", "kappa-query", "kappa-replay"] {
        assert_eq!(std::fs::read_link(rootfs.join(tool)).unwrap(), Path::new("kappa-lake"), "{tool}");
    }
    assert!(rootfs.join("etc/ssl/certs/ca-certificates.crt").metadata().unwrap().len() > 100_000);

    // The demo, inside: the seed's sales, produced, consumed, queried.
    let seed = rootfs.join("tmp/seed");
    std::fs::create_dir_all(&seed).unwrap();
    for file in crate::support::sales_files() {
        std::fs::copy(&file, seed.join(file.file_name().unwrap())).unwrap();
    }
    let mut inputs: Vec<String> = crate::support::sales_files().iter().map(|f| format!("/tmp/seed/{}", f.file_name().unwrap().to_string_lossy())).collect();
    inputs.sort();
    let user = "65532:65532";
    let mut produce = vec!["/kappa-producer", "--to", "log:/tmp/data/log", "--input"];
    produce.extend(inputs.iter().map(String::as_str));
    expect_status(&run(&mut inside(&rootfs, user, &produce)), 0);
    let consume =
        ["/kappa-consumer", "--from", "log:/tmp/data/log", "--lake", "/tmp/data/lake", "--table", "sales", "--event-time", "sale_date", "--until-idle", "2s"];
    expect_status(&run(&mut inside(&rootfs, user, &consume)), 0);
    let query = [
        "/kappa-query",
        "--lake",
        "/tmp/data/lake",
        "--table",
        "sales",
        "--format",
        "csv",
        "SELECT count(*) AS n, round(sum(total_amount), 2) AS revenue FROM sales",
    ];
    let output = run(&mut inside(&rootfs, user, &query));
    expect_status(&output, 0);
    let answer = String::from_utf8_lossy(&output.stdout).to_string();
    assert!(answer.lines().nth(1).is_some_and(|l| l.starts_with("400,")), "{answer}");
    // The tools' --version names the commit the image was built from.
    let output = run(&mut inside(&rootfs, user, &["/kappa-consumer", "--version"]));
    let version = String::from_utf8_lossy(&output.stdout).to_string();
    assert!(version.starts_with(&format!("kappa-consumer {} (commit ", env!("CARGO_PKG_VERSION"))) && !version.contains("unknown"), "{version}");
    // The allocator as built (common/src/memory.rs, .cargo/config.toml): jemalloc, its
    // background thread on, unused pages given back after 300 ms. jemalloc prints its options
    // at exit when asked to; an image built without the repository's cargo settings keeps
    // jemalloc's 10 s, and a consumer's resident memory with it.
    let output = run(inside(&rootfs, user, &["/kappa-consumer", "--version"]).env("_RJEM_MALLOC_CONF", "stats_print:true"));
    let stats = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(stats.contains("opt.dirty_decay_ms: 300") && stats.contains("opt.background_thread: true"), "{stats}");
    // The same binary called by its own name: a tool as its first argument; none, or an
    // unknown one, is a usage error naming the tools.
    let output = run(&mut inside(&rootfs, user, &["/kappa-lake", "replay", "--version"]));
    expect_status(&output, 0);
    assert!(String::from_utf8_lossy(&output.stdout).starts_with("kappa-replay "), "{output:?}");
    let output = run(&mut inside(&rootfs, user, &["/kappa-lake", "replay", "status", "--lake", "/tmp/data/lake", "--table", "sales"]));
    expect_status(&output, 0);
    assert!(String::from_utf8_lossy(&output.stdout).contains("table sales: current generation "), "{output:?}");
    for args in [&["/kappa-lake"][..], &["/kappa-lake", "ingest"]] {
        let output = run(&mut inside(&rootfs, user, args));
        expect_status(&output, 2);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("Tools: producer, consumer, replay, query"), "{args:?}: {stderr}");
    }
    // The lake belongs to the image's user, not root.
    let owner = std::fs::metadata(rootfs.join("tmp/data/lake")).map(|m| std::os::unix::fs::MetadataExt::uid(&m)).unwrap();
    if root() {
        assert_eq!(owner, 65532);
    }
}
