//! The key contract of docs/cache.md, input by input: everything the table
//! lists changes the key, everything it excludes does not.

use super::*;

fn parent() -> CacheKey {
    scratch("linux/amd64").key()
}

fn cache_mount(id: &str) -> RunMount {
    RunMount::Cache {
        target: "/root/.cache".into(),
        id: id.into(),
        sharing: CacheSharing::Shared,
        from: None,
        source: String::new(),
        mode: 0o755,
        uid: 0,
        gid: 0,
        readonly: false,
    }
}

struct RunCase {
    argv: Vec<String>,
    env: Vec<String>,
    args: Vec<String>,
    user: &'static str,
    workdir: &'static str,
    network: &'static str,
    mounts: Vec<(RunMount, Option<CacheKey>)>,
}

impl RunCase {
    fn base() -> RunCase {
        RunCase {
            argv: vec!["/bin/sh".into(), "-c".into(), "make".into()],
            env: vec!["PATH=/bin".into()],
            args: vec!["VERSION=1.2".into()],
            user: "",
            workdir: "/src",
            network: "host",
            mounts: vec![(cache_mount("go"), None)],
        }
    }

    fn key(&self) -> CacheKey {
        let mounts: Vec<(&RunMount, Option<CacheKey>)> =
            self.mounts.iter().map(|(m, k)| (m, *k)).collect();
        run(&Run {
            parent: parent(),
            argv: &self.argv,
            env: &self.env,
            build_args: &self.args,
            user: self.user,
            workdir: self.workdir,
            network: self.network,
            mounts: &mounts,
        })
        .key()
    }
}

#[test]
fn run_key_covers_every_documented_input() {
    let base = RunCase::base().key();
    type Change = Box<dyn Fn(&mut RunCase)>;
    let changes: Vec<(&str, Change)> = vec![
        ("argv", Box::new(|c| c.argv[2] = "make all".into())),
        ("env", Box::new(|c| c.env.push("A=1".into()))),
        ("build arg", Box::new(|c| c.args[0] = "VERSION=1.3".into())),
        ("user", Box::new(|c| c.user = "nobody")),
        ("workdir", Box::new(|c| c.workdir = "/")),
        ("network", Box::new(|c| c.network = "none")),
        ("mount id", Box::new(|c| c.mounts[0].0 = cache_mount("npm"))),
        (
            "mount source key",
            Box::new(|c| c.mounts[0].1 = Some(parent())),
        ),
        ("another mount", Box::new(|c| c.mounts.clear())),
    ];
    for (what, change) in changes {
        let mut c = RunCase::base();
        change(&mut c);
        assert_ne!(c.key(), base, "{what} must change the RUN key");
    }
    // Same inputs, same key: nothing else (cache mount contents, proxy
    // variables, secrets' values) can enter it.
    assert_eq!(RunCase::base().key(), base);
}

#[test]
fn run_key_depends_on_the_parent() {
    let c = RunCase::base();
    let a = run(&Run {
        parent: image("sha256:aa").key(),
        argv: &c.argv,
        env: &c.env,
        build_args: &c.args,
        user: c.user,
        workdir: c.workdir,
        network: c.network,
        mounts: &[],
    });
    let mut b = a.clone();
    b.fields[0].1 = Value::Key(image("sha256:bb").key());
    assert_ne!(a.key(), b.key());
    assert_eq!(a.parent(), Some(image("sha256:aa").key()));
}

fn copy_base() -> Copy<'static> {
    Copy {
        parent: parent(),
        is_add: false,
        sources: &[],
        dest: "/app/",
        workdir: "/",
        chown: None,
        chmod: None,
        link: false,
        exclude: &[],
        parents: false,
        unpack: None,
        heredocs: &[],
        source: CopySource::Context([1; 32]),
        urls: &[],
    }
}

#[test]
fn copy_key_covers_every_documented_input() {
    let base = copy(&copy_base()).key();
    let excl = ["*.md".to_string()];
    let docs = [Heredoc {
        name: "f".into(),
        content: "x\n".into(),
        expand: true,
        chomp: false,
        fd: 0,
    }];
    let urls = [("http://h/f".to_string(), "ab".to_string())];
    let srcs = ["/bin/".to_string()];
    let changed: Vec<(&str, Copy)> = vec![
        (
            "kind",
            Copy {
                is_add: true,
                ..copy_base()
            },
        ),
        (
            "dest",
            Copy {
                dest: "/srv/",
                ..copy_base()
            },
        ),
        (
            "sources",
            Copy {
                sources: &srcs,
                ..copy_base()
            },
        ),
        (
            "workdir",
            Copy {
                workdir: "/w",
                ..copy_base()
            },
        ),
        (
            "chown",
            Copy {
                chown: Some("1:1"),
                ..copy_base()
            },
        ),
        (
            "chmod",
            Copy {
                chmod: Some("755"),
                ..copy_base()
            },
        ),
        (
            "link",
            Copy {
                link: true,
                ..copy_base()
            },
        ),
        (
            "exclude",
            Copy {
                exclude: &excl,
                ..copy_base()
            },
        ),
        (
            "parents",
            Copy {
                parents: true,
                ..copy_base()
            },
        ),
        (
            "unpack",
            Copy {
                unpack: Some(false),
                ..copy_base()
            },
        ),
        (
            "heredoc",
            Copy {
                heredocs: &docs,
                ..copy_base()
            },
        ),
        (
            "content",
            Copy {
                source: CopySource::Context([2; 32]),
                ..copy_base()
            },
        ),
        (
            "from stage",
            Copy {
                source: CopySource::Stage([1; 32]),
                ..copy_base()
            },
        ),
        (
            "url",
            Copy {
                urls: &urls,
                ..copy_base()
            },
        ),
    ];
    for (what, c) in changed {
        assert_ne!(copy(&c).key(), base, "{what} must change the COPY key");
    }
    assert_eq!(copy(&copy_base()).key(), base);
}

#[test]
fn workdir_meta_and_bases() {
    let w = workdir(parent(), "/app", "").key();
    assert_ne!(workdir(parent(), "/srv", "").key(), w);
    assert_ne!(workdir(parent(), "/app", "nobody").key(), w);
    let m = meta(parent(), "ENV A=1", "ENV A=1").key();
    assert_ne!(meta(parent(), "ENV A=2", "ENV A=2").key(), m);
    assert_ne!(meta(w, "ENV A=1", "ENV A=1").key(), m);
    assert_ne!(scratch("linux/arm64").key(), parent());
    assert_ne!(image("sha256:aa").key(), image("sha256:bb").key());
}

/// The encoding is part of the contract: records written by one kiln
/// version are found by the next only if this does not move. Change it
/// only together with `VERSION` in key.rs and docs/cache.md.
#[test]
fn encoding_is_stable() {
    assert_eq!(
        scratch("linux/amd64").key().hex(),
        "c1719b6260c0f01cb11b4bcdcf6bbdbe39a1345ccdfbc9bc2a9d986217938094"
    );
}
