//! COPY and ADD: files from the context, another stage, an image, a
//! here-document or a URL into the stage, as one layer.

use kiln_dockerfile::{CopyFrom, Heredoc, Step};
use kiln_fs::context::{CopyHashOptions, SourceRoot};
use kiln_fs::copy::{copy_into, CopyOptions};

use crate::cache::KeyBuilder;
use crate::error::{BuildError, Context};
use crate::ops::run::step_error;
use crate::rootfs::{ReadonlyRootfs, WorkingRootfs};
use crate::stage::{StageBuild, StageState};

/// The fields of a `StepKind::Copy`.
pub struct CopyArgs<'a> {
    pub is_add: bool,
    pub sources: &'a [String],
    pub heredocs: &'a [Heredoc],
    pub dest: &'a str,
    pub from: Option<&'a CopyFrom>,
    pub chown: Option<&'a str>,
    pub chmod: Option<&'a str>,
    pub link: bool,
    pub exclude: &'a [String],
    /// `--link`: every layer is already made independently of what is
    /// below it (the diff of a fresh upper dir), so it changes nothing here.
    pub parents: bool,
    pub checksum: Option<&'a str>,
    pub unpack: Option<bool>,
}

fn is_url(s: &str) -> bool {
    s.starts_with("http://") || s.starts_with("https://")
}

pub fn copy(
    b: &StageBuild,
    state: &mut StageState,
    step: &Step,
    c: CopyArgs,
) -> Result<(), BuildError> {
    let fail = |m: String| step_error(b, step, m);
    let (urls, paths): (Vec<String>, Vec<String>) =
        c.sources.iter().cloned().partition(|s| is_url(s));
    if !urls.is_empty() && !c.is_add {
        return Err(fail(format!(
            "COPY cannot fetch URLs ({}); use ADD",
            urls[0]
        )));
    }
    if !urls.is_empty() && c.from.is_some() {
        return Err(fail("ADD --from cannot be used with URLs".into()));
    }
    let _ = c.link;
    let workdir = state.config.config.working_dir.clone();

    let mut key = KeyBuilder::new(if c.is_add { "add" } else { "copy" });
    key.key("parent", &state.key)
        .str("dest", c.dest)
        .str("workdir", &workdir)
        .str("chown", c.chown.unwrap_or(""))
        .str("chmod", c.chmod.unwrap_or(""))
        .list("exclude", c.exclude)
        .str("parents", &c.parents.to_string())
        .str("unpack", &format!("{:?}", c.unpack));
    for h in c.heredocs {
        key.str("heredoc-name", &h.name).str("heredoc", &h.content);
    }

    // The source root, and the key of what it holds.
    let mut _view = None;
    let from_root: SourceRoot;
    let source: Option<&SourceRoot> = if paths.is_empty() {
        None
    } else {
        Some(match c.from {
            None => {
                let hash = b
                    .context
                    .checksum(
                        &paths,
                        &CopyHashOptions {
                            exclude: c.exclude.to_vec(),
                            parents: c.parents,
                        },
                    )
                    .map_err(|e| fail(e.to_string()))?;
                key.field("context", &hash.0);
                b.context.source()
            }
            Some(from) => {
                let layers = match from {
                    CopyFrom::Stage(i) => b.wait_stage(*i)?.layers.clone(),
                    CopyFrom::Image(name) => b.bases.get(name)?.layers.clone(),
                };
                let view = ReadonlyRootfs::mount(b.builder, &layers)?;
                from_root = SourceRoot::rootfs(view.path())
                    .context(|| "opening the --from source".to_string())?;
                // Keyed by the content of the files read, like a context
                // COPY, so a change elsewhere in that stage keeps this cached.
                let hash = kiln_fs::context::checksum(
                    &from_root,
                    &Default::default(),
                    &paths,
                    &CopyHashOptions {
                        exclude: c.exclude.to_vec(),
                        parents: c.parents,
                    },
                )
                .map_err(|e| fail(e.to_string()))?;
                key.field("from-content", &hash.0);
                _view = Some(view);
                &from_root
            }
        })
    };

    // Started only now: waiting for a --from stage is not this step's time.
    let progress = b.steps.start(format!("{} {}", state.label, step.original));

    // URLs are fetched every time (as BuildKit does); their content is the key.
    let mut downloads = Vec::new();
    if !urls.is_empty() {
        let client =
            kiln_fs::copy::url::client().context(|| "starting the HTTP client".to_string())?;
        for url in &urls {
            let d = b
                .runtime
                .block_on(kiln_fs::copy::url::download(
                    &client,
                    url,
                    c.checksum,
                    &b.builder.root.join("tmp"),
                ))
                .map_err(|e| fail(e.to_string()))?;
            key.str("url", url).str("url-sha256", &d.sha256);
            downloads.push(d);
        }
    }
    let key = key.finish();

    if let Some(layer) = b.cache_hit(&key, &state.layers)? {
        state.push(step, key, layer);
        progress.cached();
        return Ok(());
    }

    let rootfs = WorkingRootfs::prepare(b.builder, &state.layers)?;
    let opts = CopyOptions {
        sources: paths.clone(),
        dest: c.dest.to_string(),
        workdir: workdir.clone(),
        chown: c.chown.map(str::to_string),
        chmod: c.chmod.map(str::to_string),
        exclude: c.exclude.to_vec(),
        parents: c.parents,
        unpack: c.is_add && c.unpack.unwrap_or(true),
        tmp_dir: Some(b.builder.root.join("tmp")),
    };
    if let Some(source) = source {
        copy_into(source, rootfs.merged(), &opts).map_err(|e| fail(e.to_string()))?;
    }
    if !c.heredocs.is_empty() {
        let dir = tempfile::Builder::new()
            .prefix("heredoc-")
            .tempdir_in(b.builder.root.join("tmp"))
            .context(|| "creating a here-document directory".to_string())?;
        for h in c.heredocs {
            kiln_fs::copy::write_heredoc(dir.path(), &h.name, h.content.as_bytes())
                .map_err(|e| fail(format!("writing here-document {}: {e}", h.name)))?;
        }
        let root =
            SourceRoot::scratch(dir.path()).context(|| "opening here-documents".to_string())?;
        let opts = CopyOptions {
            sources: c.heredocs.iter().map(|h| h.name.clone()).collect(),
            unpack: false,
            ..opts.clone()
        };
        copy_into(&root, rootfs.merged(), &opts).map_err(|e| fail(e.to_string()))?;
    }
    for d in &downloads {
        d.copy_into(rootfs.merged(), &opts)
            .map_err(|e| fail(e.to_string()))?;
    }
    let layer = b.commit(rootfs, &key)?;
    state.push(step, key, layer);
    progress.done();
    Ok(())
}
