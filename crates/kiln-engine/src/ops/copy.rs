//! COPY and ADD: files from the context, another stage, an image, a
//! here-document or a URL into the stage, as one layer.

use std::path::{Path, PathBuf};

use kiln_dockerfile::{CopyFrom, CopyStep, Step};
use kiln_fs::context::{CopyHashOptions, SourceRoot};
use kiln_fs::copy::url::Download;
use kiln_fs::copy::{copy_into, CopyOptions};
use kiln_fs::file_hashes::FileHashes;

use crate::cache::{inputs, CacheKey, Inputs};
use crate::error::{BuildError, Context};
use crate::explain::{listing, Details};
use crate::layer::Layer;
use crate::progress::Step as StepProgress;
use crate::rootfs::{ReadonlyRootfs, WorkingRootfs};
use crate::state::{StageBuild, StageState};
use crate::step::{drive, hit_by_fast_key, Op};

fn is_url(s: &str) -> bool {
    s.starts_with("http://") || s.starts_with("https://")
}

/// A COPY with its sources resolved: ready to be keyed and carried out.
struct Copy<'a, 'b> {
    b: &'a StageBuild<'b>,
    step: &'a Step,
    args: &'a CopyStep,
    paths: Vec<String>,
    /// Where `paths` are read from (context, or a stage's or image's
    /// view), with the content hashes its checksum found.
    source: Option<(&'a SourceRoot, &'a FileHashes)>,
    /// The layer snapshots of a `--from` source, top-most first.
    source_layers: &'a [PathBuf],
    downloads: Vec<Download>,
    workdir: String,
    inputs: Inputs,
    fast_key: Option<CacheKey>,
}

pub fn copy(
    b: &StageBuild,
    state: &mut StageState,
    step: &Step,
    c: &CopyStep,
) -> Result<(), BuildError> {
    let fail = |m: String| b.step_error(step, m);
    let (urls, paths) = split_urls(b, step, c)?;
    let hash_opts = CopyHashOptions {
        exclude: c.exclude.to_vec(),
        parents: c.parents,
    };
    let workdir = state.config.config.working_dir.clone();
    let name = format!("{} {}", state.label, step.original);
    let parent = state.key;
    let keyed = |source, urls: &[(String, String)]| copy_inputs(c, parent, &workdir, source, urls);

    // The source root, and the hash of what is read from it.
    let from_view: FromView;
    let mut fast_key = None;
    let mut source_layers: &[PathBuf] = &[];
    let (source, source_key) = match &c.from {
        _ if paths.is_empty() => (None, inputs::CopySource::None),
        None => {
            let hash = b
                .context
                .checksum(&paths, &hash_opts)
                .map_err(|e| fail(e.to_string()))?;
            (
                Some((b.context.source(), b.context.hashes())),
                inputs::CopySource::Context(hash.0),
            )
        }
        Some(from) => {
            let (layers, from_key) = match from {
                CopyFrom::Stage(i) => {
                    let out = b.wait_stage(*i)?;
                    (out.layers.clone(), out.key)
                }
                CopyFrom::Image(name) => {
                    let img = b.bases.get(name)?;
                    (img.layers.clone(), img.key)
                }
            };
            // The source unchanged since the record was made: a hit
            // without mounting or hashing any of its files.
            let fast = keyed(inputs::CopySource::StageKey(from_key), &[]).key();
            if hit_by_fast_key(b, state, step, name.clone(), &fast)? {
                return Ok(());
            }
            fast_key = Some(fast);
            from_view = FromView::mount(b, &layers)?;
            let hash = from_view.checksum(b, step, &paths, &hash_opts)?;
            source_layers = from_view.view.layers();
            (
                Some((&from_view.root, &from_view.hashes)),
                inputs::CopySource::Stage(hash),
            )
        }
    };

    // Started only now: waiting for a --from stage is not this step's time.
    let progress = b.steps.start(name);
    // URLs are fetched every time (as BuildKit does); their content is the key.
    let downloads = download(b, step, &urls, c.checksum.as_deref())?;
    let fetched: Vec<(String, String)> = urls
        .iter()
        .zip(&downloads)
        .map(|(u, d)| (u.clone(), d.sha256.clone()))
        .collect();
    let inputs = keyed(source_key, &fetched);
    let op = Copy {
        b,
        step,
        args: c,
        paths,
        source,
        source_layers,
        downloads,
        workdir,
        inputs,
        fast_key,
    };
    drive(b, state, step, progress, &op)
}

/// The sources split into URLs and paths; URLs only where ADD allows them.
fn split_urls(
    b: &StageBuild,
    step: &Step,
    c: &CopyStep,
) -> Result<(Vec<String>, Vec<String>), BuildError> {
    let (urls, paths): (Vec<String>, Vec<String>) =
        c.sources.iter().cloned().partition(|s| is_url(s));
    if let Some(url) = urls.first() {
        if !c.is_add {
            return Err(b.step_error(step, format!("COPY cannot fetch URLs ({url}); use ADD")));
        }
        if c.from.is_some() {
            return Err(b.step_error(step, "ADD --from cannot be used with URLs".into()));
        }
    }
    Ok((urls, paths))
}

/// The cache inputs of a COPY: the instruction and what it reads.
fn copy_inputs(
    c: &CopyStep,
    parent: CacheKey,
    workdir: &str,
    source: inputs::CopySource,
    urls: &[(String, String)],
) -> Inputs {
    inputs::copy(&inputs::Copy {
        parent,
        is_add: c.is_add,
        sources: &c.sources,
        dest: &c.dest,
        workdir,
        chown: c.chown.as_deref(),
        chmod: c.chmod.as_deref(),
        link: c.link,
        exclude: &c.exclude,
        parents: c.parents,
        unpack: c.unpack,
        heredocs: &c.heredocs,
        source,
        urls,
    })
}

/// A `--from` stage or image, mounted read-only while the copy reads it.
struct FromView<'s> {
    /// Mounted as long as the copy reads it.
    view: ReadonlyRootfs<'s>,
    root: SourceRoot,
    /// Its layers' file hashes, loaded once for the checksum and listing.
    hashes: FileHashes,
}

impl<'s> FromView<'s> {
    fn mount(b: &StageBuild<'s>, layers: &[Layer]) -> Result<Self, BuildError> {
        let view = ReadonlyRootfs::mount(b.session, layers)?;
        let root =
            SourceRoot::rootfs(view.path()).context(|| "opening the --from source".to_string())?;
        let hashes = view.file_hashes();
        Ok(FromView { view, root, hashes })
    }

    /// Keyed by the content of the files read, like a context COPY, so a
    /// change elsewhere in that stage keeps this cached.
    fn checksum(
        &self,
        b: &StageBuild,
        step: &Step,
        paths: &[String],
        opts: &CopyHashOptions,
    ) -> Result<[u8; 32], BuildError> {
        let hash = kiln_fs::context::checksum(&self.root, &self.hashes, paths, opts)
            .map_err(|e| b.step_error(step, e.to_string()))?;
        b.session.file_hashes.add_counts(&self.hashes);
        Ok(hash.0)
    }
}

fn download(
    b: &StageBuild,
    step: &Step,
    urls: &[String],
    checksum: Option<&str>,
) -> Result<Vec<Download>, BuildError> {
    if urls.is_empty() {
        return Ok(Vec::new());
    }
    let client = kiln_fs::copy::url::client().context(|| "starting the HTTP client".to_string())?;
    let tmp = b.session.paths.tmp();
    urls.iter()
        .map(|url| {
            b.session
                .block_on(kiln_fs::copy::url::download(&client, url, checksum, &tmp))
                .map_err(|e| b.step_error(step, e.to_string()))
        })
        .collect()
}

impl Op for Copy<'_, '_> {
    fn inputs(&self) -> &Inputs {
        &self.inputs
    }

    fn fast_key(&self) -> Option<CacheKey> {
        self.fast_key
    }

    /// Which files it read (from the context, or the `--from` source, under
    /// the input's name), so a later miss can name the one that changed.
    fn details(&self) -> Details {
        let mut d = Details::new();
        let name = if self.args.from.is_none() {
            "context"
        } else {
            "from-content"
        };
        if let Some((source, hashes)) = self.source.filter(|_| !self.paths.is_empty()) {
            if let Some(files) = listing(source, hashes, &self.paths, &self.args.exclude) {
                d.insert(name.into(), files);
            }
        }
        d
    }

    fn exec(&self, root: &WorkingRootfs, _: &StepProgress) -> Result<(), BuildError> {
        let rootfs = root.merged();
        let c = &self.args;
        let fail = |m: String| self.b.step_error(self.step, m);
        let tmp = self.b.session.paths.tmp();
        let opts = CopyOptions {
            sources: self.paths.clone(),
            dest: c.dest.to_string(),
            workdir: self.workdir.clone(),
            chown: c.chown.clone(),
            chmod: c.chmod.clone(),
            exclude: c.exclude.to_vec(),
            parents: c.parents,
            unpack: c.is_add && c.unpack.unwrap_or(true),
            tmp_dir: Some(tmp.clone()),
            host: None,
            upper: None,
            link_from: None,
        };
        if let Some((source, _)) = self.source {
            // Straight into the upper dir only when nothing else of this
            // step writes through the merged view afterwards.
            let alone = c.heredocs.is_empty() && self.downloads.is_empty();
            let upper = root.upper().filter(|_| alone).map(Path::to_path_buf);
            let link_from = upper.as_ref().map(|_| kiln_fs::copy::LinkFrom {
                layers: self.source_layers.to_vec(),
                shared: root.lowers().to_vec(),
            });
            let opts = CopyOptions {
                upper,
                link_from,
                ..opts.clone()
            };
            copy_into(source, rootfs, &opts).map_err(|e| fail(e.to_string()))?;
        }
        if !c.heredocs.is_empty() {
            let dir = tempfile::Builder::new()
                .prefix("heredoc-")
                .tempdir_in(&tmp)
                .context(|| "creating a here-document directory".to_string())?;
            for h in &c.heredocs {
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
            copy_into(&root, rootfs, &opts).map_err(|e| fail(e.to_string()))?;
        }
        for d in &self.downloads {
            d.copy_into(rootfs, &opts)
                .map_err(|e| fail(e.to_string()))?;
        }
        Ok(())
    }
}
