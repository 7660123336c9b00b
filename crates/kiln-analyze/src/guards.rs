//! Guards for lean final images: what makes a minimal image fail at start
//! (missing ELF loader or libraries, ENTRYPOINT/CMD that cannot be run,
//! unknown USER), what makes it fail later (TLS without CA certificates),
//! and what must not ship (secrets, in any layer or the config).

use serde::{Deserialize, Serialize};

use kiln_store::{Image, Store};

use crate::error::Result;
use crate::fs::{parent, FinalFs, Kind, Node};
use crate::layer_memo::LayerMemo;
use crate::layer_read::Reading;
use crate::report::Analysis;
use crate::walk::analyze_keeping;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    /// An error under `--strict`.
    Warning,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    pub severity: Severity,
    /// Short stable name: `elf-loader`, `elf-library`, `entrypoint`, `user`,
    /// `ca-bundle`, `secret`, `root`.
    pub rule: String,
    pub message: String,
    /// How to fix it.
    pub hint: String,
    /// The files an `elf-loader`/`elf-library` finding misses (absolute
    /// paths, or library names as DT_NEEDED has them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub missing: Vec<String>,
}

const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
const LIB_DIRS: [&str; 9] = [
    "/lib/x86_64-linux-gnu",
    "/usr/lib/x86_64-linux-gnu",
    "/lib64",
    "/usr/lib64",
    "/lib",
    "/usr/lib",
    "/usr/local/lib",
    "/lib/aarch64-linux-gnu",
    "/usr/lib/aarch64-linux-gnu",
];
const CA_BUNDLES: [&str; 6] = [
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/pki/tls/cacert.pem",
    "/etc/ssl/cert.pem",
    "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
];

/// Every guard on `image`, read from `store` in one pass that keeps only
/// the entries the guards look at, so its memory does not grow with the
/// number of plain data files in the image. With `memo`, each layer's
/// entries are remembered there by layer digest, and a layer read before
/// (a base, an unchanged COPY) is not read again.
pub fn guard(
    store: &Store,
    image: &Image,
    name: &str,
    memo: Option<&std::path::Path>,
) -> Result<Vec<Finding>> {
    let config = serde_json::to_value(&image.config).unwrap_or_default();
    let cfg = &config["config"];
    let mut names: Vec<String> = CA_BUNDLES.iter().map(|p| base(p).to_string()).collect();
    let argv0 = command(cfg).0.into_iter().next();
    names.extend(
        argv0
            .into_iter()
            .chain(env(cfg, "SSL_CERT_FILE"))
            .map(|p| base(&p).to_string()),
    );
    let keep = |path: &str, node: &Node| {
        node.kind != Kind::File
            || node.elf.is_some()
            || node.text.is_some()
            || node.mode & 0o111 != 0
            || path.starts_with("etc/ssl/certs/")
            || names.iter().any(|n| n == base(path))
    };
    let reading = Reading {
        keep: &keep,
        hashes: false,
        memo: memo.map(|dir| LayerMemo {
            dir,
            filter: format!("guards\0{}", names.join("\0")),
        }),
    };
    Ok(check(&analyze_keeping(store, image, name, &reading)?))
}

fn base(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// Every guard on the analysed image, warnings first.
pub fn check(a: &Analysis) -> Vec<Finding> {
    let cfg = a.config.get("config").cloned().unwrap_or_default();
    let mut out = Vec::new();
    elf_guards(&a.fs, &mut out);
    entrypoint_guard(&a.fs, &cfg, &mut out);
    user_guard(&a.fs, &cfg, &mut out);
    tls_guard(&a.fs, &cfg, &mut out);
    secret_guard(a, &mut out);
    out.sort_by_key(|f| std::cmp::Reverse(f.severity));
    out
}

fn warn(rule: &'static str, message: String, hint: impl Into<String>) -> Finding {
    Finding {
        severity: Severity::Warning,
        rule: rule.into(),
        message,
        hint: hint.into(),
        missing: Vec::new(),
    }
}

fn elf_guards(fs: &FinalFs, out: &mut Vec<Finding>) {
    let dirs = library_dirs(fs);
    for (path, node) in &fs.nodes {
        let Some(elf) = &node.elf else { continue };
        if let Some(interp) = &elf.interp {
            if fs.resolve(interp, "").is_none() {
                out.push(Finding {
                    missing: vec![interp.clone()],
                    ..warn(
                        "elf-loader",
                        format!("/{path}: its ELF interpreter {interp} is not in the image, so it fails with \"no such file or directory\""),
                        "build it statically (Go: CGO_ENABLED=0; C: -static; Rust: -C target-feature=+crt-static) \
                         or copy the loader and libraries from the stage that built it",
                    )
                });
            }
        }
        let missing: Vec<&str> = elf
            .needed
            .iter()
            .filter(|lib| !has_library(fs, &dirs, path, &elf.runpath, lib))
            .map(String::as_str)
            .collect();
        if !missing.is_empty() {
            out.push(Finding {
                missing: missing.iter().map(|m| m.to_string()).collect(),
                ..warn(
                    "elf-library",
                    format!(
                        "/{path}: needs {} which the image does not have",
                        missing.join(", ")
                    ),
                    "link it statically, or COPY --from the build stage the libraries listed \
                     (`ldd` on the binary there shows where they are)",
                )
            });
        }
    }
}

/// The loader's search path: ld.so.conf directories, then the defaults.
fn library_dirs(fs: &FinalFs) -> Vec<String> {
    let mut dirs = Vec::new();
    for (path, node) in fs.files_under("etc") {
        if !(path == "etc/ld.so.conf" || path.starts_with("etc/ld.so.conf.d/")) {
            continue;
        }
        let text = String::from_utf8_lossy(node.text.as_deref().unwrap_or_default()).into_owned();
        for line in text.lines().map(str::trim) {
            if line.starts_with('/') {
                dirs.push(line.to_string());
            }
        }
    }
    dirs.extend(LIB_DIRS.iter().map(|d| d.to_string()));
    dirs
}

fn has_library(fs: &FinalFs, dirs: &[String], binary: &str, runpath: &[String], lib: &str) -> bool {
    if lib.contains('/') {
        return fs.resolve(lib, parent(binary)).is_some();
    }
    let origin = format!("/{}", parent(binary));
    runpath
        .iter()
        .map(|r| r.replace("$ORIGIN", &origin).replace("${ORIGIN}", &origin))
        .chain(dirs.iter().cloned())
        .any(|d| fs.resolve(&format!("{d}/{lib}"), "").is_some())
}

fn strings(v: &serde_json::Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn env(cfg: &serde_json::Value, key: &str) -> Option<String> {
    strings(&cfg["Env"])
        .into_iter()
        .find_map(|e| e.strip_prefix(&format!("{key}=")).map(str::to_string))
}

/// What the container runs first: ENTRYPOINT, or else CMD, and which.
fn command(cfg: &serde_json::Value) -> (Vec<String>, &'static str) {
    let entrypoint = strings(&cfg["Entrypoint"]);
    if entrypoint.is_empty() {
        (strings(&cfg["Cmd"]), "CMD")
    } else {
        (entrypoint, "ENTRYPOINT")
    }
}

fn entrypoint_guard(fs: &FinalFs, cfg: &serde_json::Value, out: &mut Vec<Finding>) {
    let (argv, which) = command(cfg);
    let Some(argv0) = argv.first() else {
        out.push(Finding {
            severity: Severity::Info,
            rule: "entrypoint".into(),
            message: "the image has no ENTRYPOINT or CMD; `docker run` needs a command".into(),
            hint: "add ENTRYPOINT [\"/app\"] to the final stage".into(),
            missing: Vec::new(),
        });
        return;
    };
    let shell_form = argv.len() >= 2 && argv[1] == "-c" && argv0.ends_with("/sh");
    let workdir = cfg["WorkingDir"].as_str().unwrap_or("/").to_string();
    let found = if argv0.contains('/') {
        fs.resolve(argv0, workdir.trim_start_matches('/'))
    } else {
        let path = env(cfg, "PATH").unwrap_or_else(|| DEFAULT_PATH.into());
        path.split(':')
            .filter(|d| !d.is_empty())
            .find_map(|d| fs.resolve(&format!("{d}/{argv0}"), workdir.trim_start_matches('/')))
    };
    let problem = match found {
        None if shell_form => Some(format!(
            "{which} is in shell form ({}), but the image has no {argv0}",
            argv.join(" ")
        )),
        None => Some(format!("{which} runs {argv0}, which is not in the image (looked up via WORKDIR {workdir} and PATH)")),
        Some((_, n)) if n.kind != Kind::File => Some(format!("{which} runs {argv0}, which is not a regular file")),
        Some((p, n)) if n.mode & 0o111 == 0 => Some(format!(
            "{which} runs {argv0} (/{p}), which is not executable (mode {:o})",
            n.mode & 0o7777
        )),
        Some(_) => None,
    };
    if let Some(message) = problem {
        let hint = if shell_form {
            "use the exec form: ENTRYPOINT [\"/app\", \"arg\"]"
        } else {
            "COPY the program into the final stage (with --chmod=755) or fix the path"
        };
        out.push(warn("entrypoint", message, hint));
    }
}

fn user_guard(fs: &FinalFs, cfg: &serde_json::Value, out: &mut Vec<Finding>) {
    let user = cfg["User"].as_str().unwrap_or("");
    let (name, group) = user.split_once(':').unwrap_or((user, ""));
    if matches!(name, "" | "root" | "0") {
        out.push(Finding {
            severity: Severity::Info,
            rule: "root".into(),
            message: "the image runs as root".into(),
            hint: "add USER 65534:65534 (or a user the image defines) to the final stage".into(),
            missing: Vec::new(),
        });
    }
    for (id, file, what) in [(name, "etc/passwd", "user"), (group, "etc/group", "group")] {
        if id.is_empty() || id.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let text = fs.nodes.get(file).and_then(|n: &Node| n.text.clone());
        let known = text.as_deref().is_some_and(|t| {
            String::from_utf8_lossy(t)
                .lines()
                .any(|l| l.split(':').next() == Some(id))
        });
        if !known {
            let why = if text.is_none() {
                format!("the image has no /{file}")
            } else {
                format!("/{file} has no entry for it")
            };
            out.push(warn(
                "user",
                format!("USER {user}: {what} {id} cannot be resolved: {why}; the container will not start"),
                "use numeric ids (USER 65534:65534) or COPY an /etc/passwd and /etc/group that define it",
            ));
        }
    }
}

fn tls_guard(fs: &FinalFs, cfg: &serde_json::Value, out: &mut Vec<Finding>) {
    let has_bundle = CA_BUNDLES.iter().any(|p| fs.resolve(p, "").is_some())
        || env(cfg, "SSL_CERT_FILE").is_some_and(|p| fs.resolve(&p, "").is_some())
        || fs
            .files_under("etc/ssl/certs")
            .any(|(p, _)| p.ends_with(".pem"));
    if has_bundle {
        return;
    }
    for (path, node) in &fs.nodes {
        if node.elf.as_ref().is_some_and(|e| e.tls && e.executable) {
            out.push(warn(
                "ca-bundle",
                format!(
                    "/{path} does TLS, but the image has no CA certificates ({} is missing)",
                    CA_BUNDLES[0]
                ),
                "COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/",
            ));
        }
    }
}

fn secret_guard(a: &Analysis, out: &mut Vec<Finding>) {
    let config_hits = crate::secrets::scan_config(&a.config);
    for hit in a.secrets.iter().chain(config_hits.iter()) {
        let message = match hit.layer {
            Some(layer) => {
                let still =
                    a.fs.nodes
                        .get(hit.place.trim_start_matches('/'))
                        .is_some_and(|n| n.layer == layer);
                let state = if still {
                    ""
                } else {
                    " (deleted later, but still shipped in that layer)"
                };
                let by = a
                    .layers
                    .get(layer)
                    .map(|l| crate::report::short_command(&l.created_by, 60))
                    .unwrap_or_default();
                format!(
                    "{} in {} of layer {layer} ({by}){state}",
                    hit.what, hit.place
                )
            }
            None => format!("{} in the image {}", hit.what, hit.place),
        };
        out.push(warn(
            "secret",
            message,
            "pass secrets with RUN --mount=type=secret, never COPY or ARG/ENV them; rotate this one",
        ));
    }
}
