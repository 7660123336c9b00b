//! `kiln cp IMAGE:PATH DEST`: files out of an image, without running it.

use std::path::PathBuf;
use std::process::ExitCode;

use kiln_engine::Builder;
use kiln_fs::copy::HostPolicy;

use super::Global;

#[derive(clap::Args)]
pub struct Args {
    /// IMAGE:PATH inside the image.
    source: String,
    /// Host path to copy to.
    dest: PathBuf,
    /// Keep the image's owners (uid/gid) instead of making the files yours.
    #[arg(short = 'a', long)]
    archive: bool,
    /// Keep setuid/setgid bits (cleared otherwise).
    #[arg(long)]
    keep_setid: bool,
    /// Create block and character devices (skipped otherwise: an image can
    /// name any of the host's disks).
    #[arg(long)]
    devices: bool,
}

pub fn run(global: &Global, args: Args) -> anyhow::Result<ExitCode> {
    // The image name may hold a registry port (`localhost:5000/app:1`): the
    // path starts at the first ":/".
    let Some(split) = args.source.find(":/") else {
        anyhow::bail!(
            "{:?} is not IMAGE:PATH (the path must be absolute, e.g. app:/usr/bin/app)",
            args.source
        );
    };
    let (image, path) = (&args.source[..split], &args.source[split + 1..]);
    let keep = HostPolicy {
        devices: args.devices,
        setid: args.keep_setid,
        owners: args.archive,
    };
    let skipped = Builder::open(&global.root)?.copy_from_image(image, path, &args.dest, keep)?;
    for note in skipped {
        eprintln!("warning: {note}");
    }
    Ok(ExitCode::SUCCESS)
}
