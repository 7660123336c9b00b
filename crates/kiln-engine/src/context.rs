//! The build's inputs: the Dockerfile text and the build context, from a
//! directory or from stdin (`kiln build -`, `-f -`), as docker accepts them.

use std::io::Read;
use std::path::{Path, PathBuf};

use std::sync::Arc;

use kiln_fs::context::BuildContext;
use kiln_fs::file_hashes::FileHashes;

use crate::error::{BuildError, Context};
use crate::request::{BuildRequest, DockerfileSource};

pub struct ContextInput {
    /// How errors name the Dockerfile (`Dockerfile`, `build/Dockerfile.dev`).
    pub dockerfile_name: String,
    pub dockerfile: String,
    pub context: BuildContext,
    /// A context that came from stdin lives here until the build ends.
    _unpacked: Option<tempfile::TempDir>,
}

fn read_stdin() -> Result<Vec<u8>, BuildError> {
    let mut buf = Vec::new();
    std::io::stdin()
        .read_to_end(&mut buf)
        .context(|| "reading stdin".to_string())?;
    Ok(buf)
}

/// A tar (possibly compressed) rather than a Dockerfile?
fn looks_like_archive(data: &[u8]) -> bool {
    use kiln_fs::copy::archive::is_tar_header;
    use kiln_oci::compression::{sniff, Compression};
    sniff(data) != Compression::None || is_tar_header(data)
}

pub fn load_context(
    root: &Path,
    req: &BuildRequest,
    hashes: &Arc<FileHashes>,
) -> Result<ContextInput, BuildError> {
    let mut unpacked = None;
    let mut stdin_dockerfile = None;
    let context_dir: PathBuf = if req.context == "-" {
        let data = read_stdin()?;
        let dir = tempfile::Builder::new()
            .prefix("context-")
            .tempdir_in(root.join("tmp"))
            .context(|| "creating a directory for the stdin context".to_string())?;
        if looks_like_archive(&data) {
            // Any compression docker accepts (gzip, bzip2, xz, zstd), and
            // the same safe extraction as image layers.
            let plain = kiln_oci::compression::decompress(std::io::Cursor::new(data))
                .context(|| "reading the build context from stdin".to_string())?;
            kiln_fs::apply_layer(dir.path(), plain)
                .context(|| "unpacking the build context from stdin".to_string())?;
        } else {
            // `docker build - < Dockerfile`: a Dockerfile and an empty context.
            stdin_dockerfile = Some(data);
        }
        let path = dir.path().to_path_buf();
        unpacked = Some(dir);
        path
    } else {
        let dir = PathBuf::from(&req.context);
        if !dir.is_dir() {
            return Err(BuildError::other(
                format!("opening the build context {}", dir.display()),
                "not a directory (give a directory, or - to read a tar from stdin)",
            ));
        }
        dir
    };

    let (name, text, dockerfile_path) = match (&req.dockerfile, stdin_dockerfile) {
        (_, Some(data)) => ("Dockerfile".to_string(), data, None),
        (DockerfileSource::Stdin, None) => ("Dockerfile".to_string(), read_stdin()?, None),
        (DockerfileSource::Path(p), None) => {
            // Docker resolves a relative -f against the working directory.
            let data =
                std::fs::read(p).context(|| format!("reading the Dockerfile {}", p.display()))?;
            (p.display().to_string(), data, Some(p.clone()))
        }
        (DockerfileSource::InContext, None) => {
            let p = context_dir.join("Dockerfile");
            let data = std::fs::read(&p).context(|| {
                format!(
                    "reading {} (use -f to name another Dockerfile)",
                    p.display()
                )
            })?;
            ("Dockerfile".to_string(), data, Some(p))
        }
    };
    let dockerfile = String::from_utf8(text)
        .map_err(|_| BuildError::Dockerfile(format!("{name}: not valid UTF-8 text")))?;
    let context = BuildContext::open(&context_dir, dockerfile_path.as_deref())
        .context(|| format!("opening the build context {}", context_dir.display()))?
        .with_hashes(hashes.clone());
    Ok(ContextInput {
        dockerfile_name: name,
        dockerfile,
        context,
        _unpacked: unpacked,
    })
}
