//! What the loader needs to start an ELF file: its interpreter, its needed
//! libraries and run paths; and whether it does TLS (so needs CA certificates).

use memchr::memmem;
use object::elf;
use object::read::elf::{Dyn, FileHeader, ProgramHeader, SectionHeader};
use object::Endianness;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ElfInfo {
    /// PT_INTERP, e.g. `/lib64/ld-linux-x86-64.so.2`; `None` when static.
    pub interp: Option<String>,
    pub needed: Vec<String>,
    /// DT_RUNPATH and DT_RPATH entries, `$ORIGIN` unexpanded.
    pub runpath: Vec<String>,
    /// An executable (or PIE), rather than a shared library or object.
    pub executable: bool,
    pub go: bool,
    pub tls: bool,
}

/// TLS libraries a C/C++/Rust binary links when it talks HTTPS.
const TLS_LIBS: [&str; 6] = [
    "libssl",
    "libgnutls",
    "libnss3",
    "libmbedtls",
    "libwolfssl",
    "libcurl",
];

pub fn parse(data: &[u8]) -> Option<ElfInfo> {
    if !data.starts_with(b"\x7fELF") || data.len() < 5 {
        return None;
    }
    let mut info = match data[4] {
        elf::ELFCLASS64 => parse_as::<elf::FileHeader64<Endianness>>(data)?,
        elf::ELFCLASS32 => parse_as::<elf::FileHeader32<Endianness>>(data)?,
        _ => return None,
    };
    info.go = memmem::find(data, b"\xff Go buildinf:").is_some();
    info.tls = info
        .needed
        .iter()
        .any(|n| TLS_LIBS.iter().any(|t| n.starts_with(t)))
        || (info.go && memmem::find(data, b"crypto/tls.").is_some())
        || memmem::find(data, b"rustls").is_some();
    Some(info)
}

fn parse_as<H: FileHeader<Endian = Endianness>>(data: &[u8]) -> Option<ElfInfo> {
    let header = H::parse(data).ok()?;
    let endian = header.endian().ok()?;
    let e_type = header.e_type(endian);
    if e_type != elf::ET_EXEC && e_type != elf::ET_DYN {
        return None;
    }
    let mut info = ElfInfo::default();
    for ph in header.program_headers(endian, data).ok()? {
        if ph.p_type(endian) == elf::PT_INTERP {
            let bytes = ph.data(endian, data).ok()?;
            let end = bytes.iter().position(|b| *b == 0).unwrap_or(bytes.len());
            info.interp = Some(String::from_utf8_lossy(&bytes[..end]).into_owned());
        }
    }
    // A PIE has an interpreter; a shared library (also ET_DYN) does not.
    info.executable = e_type == elf::ET_EXEC || info.interp.is_some();
    let sections = header.sections(endian, data).ok()?;
    for section in sections.iter() {
        let Some(dynamic) = section.dynamic(endian, data).ok().flatten() else {
            continue;
        };
        let Ok(strings) = sections.strings(
            endian,
            data,
            object::SectionIndex(section.sh_link(endian) as usize),
        ) else {
            continue;
        };
        for d in dynamic.0 {
            let tag: u64 = d.d_tag(endian).into();
            let Ok(s) = d.string(endian, strings) else {
                continue;
            };
            let s = String::from_utf8_lossy(s).into_owned();
            match tag as u32 {
                elf::DT_NEEDED => info.needed.push(s),
                elf::DT_RUNPATH | elf::DT_RPATH => {
                    info.runpath.extend(s.split(':').map(str::to_string))
                }
                _ => {}
            }
        }
    }
    Some(info)
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_the_test_binary_itself() {
        // This test binary is a glibc-linked PIE.
        let data = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        let info = super::parse(&data).expect("an ELF file");
        assert!(info.executable);
        assert!(
            info.interp.as_deref().unwrap().contains("ld-linux"),
            "{info:?}"
        );
        assert!(
            info.needed.iter().any(|n| n.starts_with("libc.so")),
            "{info:?}"
        );
        assert!(super::parse(b"#!/bin/sh\n").is_none());
    }
}
