//! What `kiln analyze` and `kiln check` accept: an image in kiln's store, a
//! `docker save` / OCI archive file, or an OCI layout directory (skopeo's
//! `oci:DIR`). Archives and layouts are loaded into a scratch store that
//! lives as long as the [`Input`], so one reader serves all three.

use std::path::Path;

use kiln_store::{Image, Store};

use crate::error::{Error, Result};

pub struct Input {
    pub store: Store,
    pub image: Image,
    /// How the report names the image.
    pub name: String,
    _scratch: Option<tempfile::TempDir>,
}

/// Opens `what` (a file, a directory or an image name in the store at `root`).
pub fn open_input(root: &Path, what: &str) -> Result<Input> {
    let path = Path::new(what);
    if path.is_dir() {
        if !path.join("oci-layout").is_file() || !path.join("index.json").is_file() {
            return Err(Error::Invalid {
                what: format!("directory {what}"),
                why: "it is not an OCI image layout (no oci-layout and index.json); \
                      pass an image name, a `docker save` tar or an OCI layout"
                    .into(),
            });
        }
        return from_archive(root, what, |w| tar_layout(path, w));
    }
    if path.is_file() {
        return from_archive(root, what, |w| {
            let mut f = std::fs::File::open(path)?;
            std::io::copy(&mut f, w).map(drop)
        });
    }
    let store = Store::open(root)
        .map_err(|e| Error::store(format!("opening the store at {}", root.display()), e))?;
    let image = store.resolve(what).map_err(|e| {
        Error::store(
            format!("finding image {what} (not a file or directory either)"),
            e,
        )
    })?;
    Ok(Input {
        store,
        image,
        name: what.to_string(),
        _scratch: None,
    })
}

/// Loads the archive `produce` writes into a scratch store under `root/tmp`.
fn from_archive(
    root: &Path,
    what: &str,
    produce: impl FnOnce(&mut std::fs::File) -> std::io::Result<()> + Send,
) -> Result<Input> {
    let tmp = root.join("tmp");
    std::fs::create_dir_all(&tmp).map_err(|source| Error::Io {
        action: "creating",
        path: tmp.clone(),
        source,
    })?;
    let scratch = tempfile::Builder::new()
        .prefix("analyze-")
        .tempdir_in(&tmp)
        .map_err(|source| Error::Io {
            action: "creating a scratch store in",
            path: tmp.clone(),
            source,
        })?;
    let store =
        Store::open(scratch.path()).map_err(|e| Error::store("opening a scratch store", e))?;
    let (reader, writer) = rustix::pipe::pipe().map_err(|e| Error::Io {
        action: "creating a pipe for",
        path: what.into(),
        source: e.into(),
    })?;
    let (reader, mut writer) = (std::fs::File::from(reader), std::fs::File::from(writer));
    let report = std::thread::scope(|s| {
        let producer = s.spawn(move || {
            let r = produce(&mut writer);
            drop(writer);
            r
        });
        let loaded = kiln_store::archive::load(&store, reader);
        let produced = producer.join().expect("archive writer thread");
        (loaded, produced)
    });
    let loaded = match report {
        (Ok(l), _) => l,
        (Err(e), Err(io)) => {
            return Err(Error::Io {
                action: "reading",
                path: what.into(),
                source: std::io::Error::other(format!("{io}; {e}")),
            })
        }
        (Err(e), Ok(())) => return Err(Error::store(format!("reading {what}"), e)),
    };
    let first = loaded.images.first().ok_or_else(|| Error::Invalid {
        what: what.to_string(),
        why: "it holds no image".into(),
    })?;
    let image = store
        .resolve(&first.manifest_digest.to_string())
        .map_err(|e| Error::store(format!("reading the image in {what}"), e))?;
    Ok(Input {
        store,
        image,
        name: what.to_string(),
        _scratch: Some(scratch),
    })
}

/// Writes an OCI layout directory as a tar (its layout files and blobs).
fn tar_layout(dir: &Path, w: &mut std::fs::File) -> std::io::Result<()> {
    let mut tar = tar::Builder::new(w);
    for name in ["oci-layout", "index.json"] {
        tar.append_path_with_name(dir.join(name), name)?;
    }
    for alg in std::fs::read_dir(dir.join("blobs"))? {
        let alg = alg?;
        for blob in std::fs::read_dir(alg.path())? {
            let blob = blob?;
            let name = format!(
                "blobs/{}/{}",
                alg.file_name().to_string_lossy(),
                blob.file_name().to_string_lossy()
            );
            tar.append_path_with_name(blob.path(), name)?;
        }
    }
    tar.finish()
}
