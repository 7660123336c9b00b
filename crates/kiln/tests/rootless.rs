//! Rootless kiln (docs/unprivileged.md): a normal user, created here with
//! a subordinate id range, builds a multi-stage Dockerfile — RUN on the
//! Debian base giving files to `nobody` and other owners, RUN as `USER
//! nobody` without network, COPY --from,
//! `FROM scratch` — with kiln's default store for that user, and gets the
//! image root builds (config and flattened filesystem, owners included),
//! which Docker loads and runs. A user without a range gets the error that
//! says how to add one. Needs root (to create the users), `useradd`,
//! `runuser`, `newuidmap`/`newgidmap` (Debian's uidmap), dockerd and the
//! base images.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use common::archive::read_docker_archive;
use common::cli::{fails, kiln, ok};
use common::compare::assert_same_image;
use kiln_testkit as tk;

const DOCKERFILE: &str = r#"FROM debian:bookworm AS build
RUN mkdir -p /out/etc /out/data && echo built > /out/hello \
 && echo theirs > /out/theirs && chown nobody:nogroup /out/theirs \
 && chown 100:101 /out/data && chmod 4755 /out/hello \
 && touch /etc/shadow /etc/gshadow && ln -s hello /out/link
USER nobody
RUN --network=none echo mine > /tmp/mine
USER root
COPY app.txt /out/app.txt
FROM busybox:latest AS tools
FROM scratch
COPY --from=build /out/ /srv/
COPY --from=build /etc/shadow /etc/gshadow /etc/passwd /etc/group /etc/
COPY --from=build /tmp/mine /srv/mine
COPY --from=tools /bin/busybox /bin/busybox
USER nobody
CMD ["/bin/busybox", "cat", "/srv/hello", "/srv/app.txt"]
"#;

/// useradd and userdel lock /etc/passwd: one at a time.
static USERS: Mutex<()> = Mutex::new(());

/// A normal user made for one test, removed (with its home and ranges)
/// when dropped.
struct User {
    name: String,
    home: PathBuf,
}

impl User {
    /// `name` with a home under `dir`; with `range`, a subordinate uid and
    /// gid range of 65536 ids after every existing one.
    fn create(name: &str, dir: &Path, range: bool) -> User {
        let _turn = USERS.lock().unwrap_or_else(|p| p.into_inner());
        let name = common::unique(name);
        let home = dir.join("home");
        // No automatic ranges: the test says which the user gets.
        ok(Command::new("useradd")
            .args(["-m", "-K", "SUB_UID_COUNT=0", "-K", "SUB_GID_COUNT=0", "-d"])
            .arg(&home)
            .arg(&name));
        if range {
            let first = free_subid_start();
            let ids = format!("{first}-{}", first + 65535);
            ok(Command::new("usermod")
                .args(["--add-subuids", &ids, "--add-subgids", &ids])
                .arg(&name));
        }
        User { name, home }
    }

    /// `kiln ARGS` as this user, with its own HOME and XDG_DATA_HOME (so
    /// kiln's default store for a normal user).
    fn kiln(&self, bin: &Path) -> Command {
        let mut c = Command::new("runuser");
        c.args(["-u", &self.name, "--", "env"])
            .arg(format!("HOME={}", self.home.display()))
            .arg(format!("XDG_DATA_HOME={}", self.data_home().display()))
            .arg("SOURCE_DATE_EPOCH=1000")
            .arg(bin)
            // The test's own directory may be closed to the user (a clone
            // under a 0700 mktemp dir): youki returns to the cwd.
            .current_dir(&self.home);
        c
    }

    fn data_home(&self) -> PathBuf {
        self.home.join("data")
    }
}

impl Drop for User {
    fn drop(&mut self) {
        let _turn = USERS.lock().unwrap_or_else(|p| p.into_inner());
        // The store holds files of the subordinate ids: remove it as root.
        let _ = std::fs::remove_dir_all(&self.home);
        let _ = Command::new("userdel").arg(&self.name).output();
        for file in ["/etc/subuid", "/etc/subgid"] {
            let text = std::fs::read_to_string(file).unwrap_or_default();
            let prefix = format!("{}:", self.name);
            let kept: String = text
                .lines()
                .filter(|l| !l.starts_with(&prefix))
                .map(|l| format!("{l}\n"))
                .collect();
            let _ = std::fs::write(file, kept);
        }
    }
}

/// The first multiple of 65536 above every range in /etc/subuid and
/// /etc/subgid.
fn free_subid_start() -> u64 {
    let end = ["/etc/subuid", "/etc/subgid"]
        .iter()
        .flat_map(|f| {
            let text = std::fs::read_to_string(f).unwrap_or_default();
            text.lines()
                .filter_map(|l| {
                    let f: Vec<&str> = l.split(':').collect();
                    Some(f.get(1)?.parse::<u64>().ok()? + f.get(2)?.parse::<u64>().ok()?)
                })
                .collect::<Vec<_>>()
        })
        .max()
        .unwrap_or(0);
    end.div_ceil(65536).max(2) * 65536
}

fn require_tools() -> bool {
    let found = |p: &str| {
        ["/usr/sbin", "/usr/bin", "/sbin", "/bin"]
            .iter()
            .any(|d| Path::new(d).join(p).is_file())
    };
    tk::require(
        "useradd, runuser, newuidmap and newgidmap (apt-get install passwd util-linux uidmap)",
        ["useradd", "runuser", "newuidmap", "newgidmap"]
            .iter()
            .all(|p| found(p)),
    )
}

/// A scratch directory every user may enter, with the kiln binary copied
/// in (the target directory may not be reachable for another user) and
/// the build context.
struct Env {
    tmp: tempfile::TempDir,
    bin: PathBuf,
    ctx: PathBuf,
}

fn env() -> Option<Env> {
    if !(tk::require_root() && tk::require_base_images() && tk::require_docker() && require_tools())
    {
        return None;
    }
    let tmp = tk::tempdir();
    let open = |p: &Path| std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755));
    open(tmp.path()).unwrap();
    for dir in tmp.path().ancestors().skip(1) {
        let mode = std::fs::metadata(dir).unwrap().permissions().mode();
        assert!(
            mode & 0o001 != 0,
            "{} is not searchable by other users, so the test's users cannot reach {}; set TMPDIR to a directory they can (e.g. /tmp)",
            dir.display(),
            tmp.path().display()
        );
    }
    let bin = tmp.path().join("kiln");
    std::fs::copy(env!("CARGO_BIN_EXE_kiln"), &bin).unwrap();
    open(&bin).unwrap();
    let ctx = tmp.path().join("ctx");
    std::fs::create_dir(&ctx).unwrap();
    open(&ctx).unwrap();
    std::fs::write(ctx.join("Dockerfile"), DOCKERFILE).unwrap();
    std::fs::write(ctx.join("app.txt"), "from the context\n").unwrap();
    Some(Env { tmp, bin, ctx })
}

impl Env {
    fn path(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    /// The root build of the Dockerfile, as a docker-archive.
    fn root_build(&self) -> PathBuf {
        let root = self.path("root-store");
        for (tar, name) in [
            (tk::debian_rootfs_tar(), "debian:bookworm"),
            (tk::busybox_rootfs_tar(), "busybox:latest"),
        ] {
            ok(kiln(&root).arg("import").arg(tar).arg(name));
        }
        let tar = self.path("root.tar");
        ok(kiln(&root)
            .env("SOURCE_DATE_EPOCH", "1000")
            .args(["build", "-q", "-t", "root", "-o"])
            .arg(format!("type=docker,dest={}", tar.display()))
            .arg(&self.ctx));
        tar
    }
}

#[test]
fn a_normal_user_builds_the_image_root_builds() {
    let Some(env) = env() else { return };
    let user_dir = env.path("user");
    std::fs::create_dir(&user_dir).unwrap();
    let user = User::create("kilnrl", &user_dir, true);
    let out = user.home.join("out.tar");
    for (tar, name) in [
        (tk::debian_rootfs_tar(), "debian:bookworm"),
        (tk::busybox_rootfs_tar(), "busybox:latest"),
    ] {
        ok(user.kiln(&env.bin).arg("import").arg(tar).arg(name));
    }
    let tag = common::unique("kiln-rootless");
    let log = ok(user
        .kiln(&env.bin)
        .args(["build", "--progress", "plain", "-t", &tag, "-o"])
        .arg(format!("type=docker,dest={}", out.display()))
        .arg(&env.ctx));
    // The RUN step ran as root of the user namespace, chown included.
    assert!(log.contains("DONE"), "{log}");
    // kiln's default store for a normal user, owned by that user.
    let store = user.data_home().join("kiln");
    assert!(store.join("snapshots").is_dir(), "no store in {store:?}");
    let listed = ok(user.kiln(&env.bin).arg("images"));
    assert!(listed.contains(&tag), "{listed}");

    let reference = read_docker_archive(&env.root_build(), None).unwrap();
    let got = read_docker_archive(&out, None).unwrap();
    assert_same_image(&reference, &got, "rootless build");
    // Not only equal, but right: the owners came through the namespace.
    let owner = |path: &str| {
        let e = got.tree.entries.get(path);
        let e = e.unwrap_or_else(|| panic!("{path} missing"));
        (e.uid, e.gid)
    };
    assert_eq!(owner("/srv/theirs"), (65534, 65534));
    assert_eq!(owner("/srv/data"), (100, 101));
    assert_eq!(owner("/etc/shadow"), (0, 42), "Debian's shadow group");

    ok(tk::docker().arg("load").arg("-i").arg(&out));
    let ran = ok(tk::docker().args(["run", "--rm", &tag]));
    let _ = tk::docker().args(["rmi", "-f", &tag]).output();
    assert_eq!(ran, "built\nfrom the context\n");
}

#[test]
fn a_user_without_a_subordinate_range_is_told_how_to_add_one() {
    let Some(env) = env() else { return };
    let user_dir = env.path("user");
    std::fs::create_dir(&user_dir).unwrap();
    let user = User::create("kilnnr", &user_dir, false);
    let err = fails(user.kiln(&env.bin).arg("build").arg(&env.ctx));
    for needle in [
        "rootless kiln",
        &format!("user {}", user.name),
        "no subordinate uid range in /etc/subuid",
        "usermod --add-subuids",
        "--add-subgids",
    ] {
        assert!(err.contains(needle), "missing {needle:?} in:\n{err}");
    }
    // Commands that need no store still work for that user.
    ok(user
        .kiln(&env.bin)
        .arg("lint")
        .arg("-f")
        .arg(env.ctx.join("Dockerfile")));
}
