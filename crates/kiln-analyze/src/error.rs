use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{action}: {source}")]
    Store {
        action: String,
        #[source]
        source: kiln_store::Error,
    },
    #[error("{action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("reading layer {layer} of the image: {source}")]
    Layer {
        layer: usize,
        #[source]
        source: std::io::Error,
    },
    #[error("{what}: {why}")]
    Invalid { what: String, why: String },
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub(crate) fn store(action: impl Into<String>, source: kiln_store::Error) -> Error {
        Error::Store {
            action: action.into(),
            source,
        }
    }
}
