//! Target platforms (`linux/amd64`, `linux/arm/v7`).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why a string is not a platform.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid platform {input:?}: expected OS/ARCH[/VARIANT], e.g. linux/amd64")]
pub struct PlatformError {
    pub input: String,
}

/// An OS, CPU architecture and optional variant, in Go's GOOS/GOARCH names.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

impl Platform {
    pub fn new(os: &str, architecture: &str, variant: Option<&str>) -> Platform {
        normalize(os, architecture, variant)
    }

    /// Parses `os/arch[/variant]`.
    pub fn parse(input: &str) -> Result<Platform, PlatformError> {
        let err = || PlatformError {
            input: input.to_string(),
        };
        let parts: Vec<&str> = input.split('/').collect();
        let valid = |s: &str| {
            !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
        };
        if !(2..=3).contains(&parts.len()) || !parts.iter().all(|p| valid(p)) {
            return Err(err());
        }
        Ok(normalize(
            &parts[0].to_ascii_lowercase(),
            &parts[1].to_ascii_lowercase(),
            parts.get(2).map(|v| v.to_ascii_lowercase()).as_deref(),
        ))
    }

    /// The platform of the running machine (always `linux`).
    pub fn host() -> Platform {
        let (arch, variant) = match std::env::consts::ARCH {
            "x86_64" => ("amd64", None),
            "x86" => ("386", None),
            "aarch64" => ("arm64", None),
            "arm" => ("arm", Some("v7")),
            "powerpc64" if cfg!(target_endian = "little") => ("ppc64le", None),
            "powerpc64" => ("ppc64", None),
            "riscv64" => ("riscv64", None),
            "s390x" => ("s390x", None),
            "loongarch64" => ("loong64", None),
            other => (other, None),
        };
        normalize("linux", arch, variant)
    }

    /// Whether an image for `other` runs here: same OS and architecture, and
    /// the same variant when both name one.
    pub fn matches(&self, other: &Platform) -> bool {
        self.os == other.os
            && self.architecture == other.architecture
            && match (&self.variant, &other.variant) {
                (Some(a), Some(b)) => a == b,
                _ => true,
            }
    }

    /// Converts to the oci-spec platform used in descriptors.
    pub fn to_oci(&self) -> oci_spec::image::Platform {
        let mut p = oci_spec::image::Platform::default();
        p.set_os(self.os.as_str().into());
        p.set_architecture(self.architecture.as_str().into());
        p.set_variant(self.variant.clone());
        p
    }

    /// Converts from an oci-spec platform (as found in an index).
    pub fn from_oci(p: &oci_spec::image::Platform) -> Platform {
        normalize(
            &p.os().to_string(),
            &p.architecture().to_string(),
            p.variant().as_deref(),
        )
    }
}

/// containerd's normalisation: common aliases and the default variants that
/// mean the same thing as no variant.
fn normalize(os: &str, arch: &str, variant: Option<&str>) -> Platform {
    let os = if os == "macos" { "darwin" } else { os };
    let (arch, variant) = match (arch, variant) {
        ("x86_64" | "x86-64", v) => ("amd64", v),
        ("i386" | "i686", v) => ("386", v),
        ("aarch64" | "arm64", Some("v8") | None) => ("arm64", None),
        ("aarch64", v) => ("arm64", v),
        ("armhf", _) => ("arm", Some("v7")),
        ("armel", _) => ("arm", Some("v6")),
        ("amd64", Some("v1")) => ("amd64", None),
        (a, v) => (a, v),
    };
    Platform {
        os: os.to_string(),
        architecture: arch.to_string(),
        variant: variant.filter(|v| !v.is_empty()).map(str::to_string),
    }
}

impl FromStr for Platform {
    type Err = PlatformError;
    fn from_str(s: &str) -> Result<Platform, PlatformError> {
        Platform::parse(s)
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Platform({self})")
    }
}

impl Serialize for Platform {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Platform {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Platform, D::Error> {
        let s = String::deserialize(d)?;
        Platform::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_displays() {
        assert_eq!(
            Platform::parse("linux/amd64").unwrap().to_string(),
            "linux/amd64"
        );
        let arm = Platform::parse("linux/arm/v7").unwrap();
        assert_eq!(arm.variant.as_deref(), Some("v7"));
        assert_eq!(arm.to_string(), "linux/arm/v7");
        assert_eq!(
            Platform::parse("linux/aarch64").unwrap().to_string(),
            "linux/arm64"
        );
        assert_eq!(
            Platform::parse("linux/arm64/v8").unwrap().to_string(),
            "linux/arm64"
        );
        for bad in ["linux", "linux/", "/amd64", "a/b/c/d", "linux/am d64"] {
            let e = Platform::parse(bad).unwrap_err();
            assert!(e.to_string().contains(bad), "{e}");
        }
    }

    #[test]
    fn host_is_linux_and_round_trips_through_oci_spec() {
        let h = Platform::host();
        assert_eq!(h.os, "linux");
        assert!(!h.architecture.is_empty());
        assert_eq!(Platform::from_oci(&h.to_oci()), h);
        assert!(h.matches(&Platform::parse(&h.to_string()).unwrap()));
        assert!(!Platform::parse("linux/s390x")
            .unwrap()
            .matches(&Platform::parse("linux/amd64").unwrap()));
    }
}
