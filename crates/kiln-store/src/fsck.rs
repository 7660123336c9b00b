//! `fsck`: re-hash every blob and check every image's blobs are present,
//! the right size and readable.

use std::collections::HashSet;
use std::fs;
use std::io;
use std::path::PathBuf;

use kiln_oci::media_type as mt;
use kiln_oci::oci_spec::image::{Descriptor, ImageIndex, ImageManifest};
use kiln_oci::{Digest, HashingWriter};

use crate::error::{IoContext, Result};
use crate::names::{checked_digest, name_of};
use crate::Store;

/// One thing wrong with the store.
#[derive(Debug, Clone)]
pub struct FsckProblem {
    pub digest: Option<Digest>,
    pub path: PathBuf,
    /// What is wrong, e.g. "content hashes to sha256:…".
    pub problem: String,
    /// The image (name or digest) that needs it, if any.
    pub needed_by: Option<String>,
}

#[derive(Debug, Default, Clone)]
pub struct FsckReport {
    pub blobs_checked: usize,
    pub bytes_checked: u64,
    pub images_checked: usize,
    pub problems: Vec<FsckProblem>,
}

impl FsckReport {
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }
}

impl Store {
    /// Verifies every blob's digest and every image's references. Read-only.
    pub fn fsck(&self) -> Result<FsckReport> {
        let mut report = FsckReport::default();
        let mut corrupt = HashSet::new();
        let dir = self.root().join("blobs/sha256");
        let mut names: Vec<_> = fs::read_dir(&dir)
            .ctx("listing blobs in", &dir)?
            .collect::<io::Result<Vec<_>>>()
            .ctx("listing blobs in", &dir)?;
        names.sort_by_key(|e| e.file_name());
        for entry in names {
            let path = entry.path();
            let Ok(digest) = Digest::from_hex(&entry.file_name().to_string_lossy()) else {
                report.problems.push(FsckProblem {
                    digest: None,
                    path,
                    problem: "file name is not a sha256 digest".into(),
                    needed_by: None,
                });
                continue;
            };
            let mut hasher = HashingWriter::new(io::sink());
            let hashed = fs::File::open(&path).and_then(|mut f| io::copy(&mut f, &mut hasher));
            report.blobs_checked += 1;
            let problem = match hashed {
                Err(e) => Some(format!("cannot read: {e}")),
                Ok(n) => {
                    report.bytes_checked += n;
                    let (_, actual, _) = hasher.finish();
                    (actual != digest).then(|| format!("content hashes to {actual}"))
                }
            };
            if let Some(problem) = problem {
                corrupt.insert(digest);
                report.problems.push(FsckProblem {
                    digest: Some(digest),
                    path,
                    problem,
                    needed_by: None,
                });
            }
        }

        for entry in self.entries()? {
            report.images_checked += 1;
            let who = name_of(&entry.descriptor)
                .map_or_else(|| entry.descriptor.digest().to_string(), |r| r.to_string());
            self.check_descriptor(&entry.descriptor, &who, &corrupt, &mut report, true);
        }
        Ok(report)
    }

    fn check_descriptor(
        &self,
        desc: &Descriptor,
        who: &str,
        corrupt: &HashSet<Digest>,
        report: &mut FsckReport,
        required: bool,
    ) {
        let mut problem = |digest: Option<Digest>, problem: String| {
            report.problems.push(FsckProblem {
                path: digest.map_or_else(PathBuf::new, |d| self.blob_path(&d)),
                digest,
                problem,
                needed_by: Some(who.to_string()),
            })
        };
        let digest = match checked_digest(desc, "descriptor") {
            Ok(d) => d,
            Err(e) => return problem(None, e.to_string()),
        };
        let size = match self.blob_size(&digest) {
            Ok(s) => s,
            Err(_) if !required => return,
            Err(_) => return problem(Some(digest), "missing".into()),
        };
        if size != desc.size() {
            problem(
                Some(digest),
                format!("is {size} bytes, its descriptor says {}", desc.size()),
            );
        }
        if corrupt.contains(&digest) {
            // Already reported with its path; also say who needs it.
            return problem(Some(digest), "corrupt (see above)".into());
        }
        let media_type = desc.media_type().to_string();
        if mt::is_index(&media_type) {
            match self.read_json::<ImageIndex>(&digest, "image index") {
                // Platforms a pull skipped may legitimately be absent.
                Ok(index) => {
                    for child in index.manifests() {
                        self.check_descriptor(child, who, corrupt, report, false);
                    }
                }
                Err(e) => problem(Some(digest), e.to_string()),
            }
        } else if mt::is_manifest(&media_type) {
            match self.read_json::<ImageManifest>(&digest, "image manifest") {
                Ok(m) => {
                    self.check_descriptor(m.config(), who, corrupt, report, true);
                    for layer in m.layers() {
                        let lt = layer.media_type().to_string();
                        if mt::layer_compression(&lt).is_none() {
                            report.problems.push(FsckProblem {
                                digest: checked_digest(layer, "layer").ok(),
                                path: PathBuf::new(),
                                problem: format!("layer has unsupported media type {lt:?}"),
                                needed_by: Some(who.to_string()),
                            });
                        }
                        self.check_descriptor(layer, who, corrupt, report, true);
                    }
                }
                Err(e) => problem(Some(digest), e.to_string()),
            }
        } else if required
            && !mt::is_config(&media_type)
            && mt::layer_compression(&media_type).is_none()
        {
            problem(
                Some(digest),
                format!("unsupported media type {media_type:?}"),
            );
        }
    }
}
