use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use kiln_oci::Reference;
use kiln_store::archive::{save_images, SaveItem};

use super::images::open_store;
use super::Global;

#[derive(clap::Args)]
pub struct Args {
    /// Write to this file instead of stdout (`-` is stdout)
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,
    /// Images (names, ids or digests)
    #[arg(required = true)]
    images: Vec<String>,
}

pub fn run(global: &Global, args: Args) -> anyhow::Result<ExitCode> {
    let store = open_store(global)?;
    let mut items = Vec::new();
    for name in &args.images {
        let image = store
            .resolve(name)
            .with_context(|| format!("saving {name}"))?;
        // Saved by name: record that name; by id: no name, like docker save.
        let names = match Reference::parse(name) {
            Ok(r) if image.reference.as_ref() == Some(&r) => vec![r],
            _ => Vec::new(),
        };
        items.push(SaveItem { image, names });
    }
    match args.output.filter(|p| p.as_os_str() != "-") {
        None => {
            let stdout = std::io::stdout();
            if stdout.is_terminal() {
                anyhow::bail!(
                    "refusing to write an archive to a terminal; use -o FILE or redirect stdout"
                );
            }
            let mut out = std::io::BufWriter::new(stdout.lock());
            save_images(&store, &items, &mut out).context("writing the archive to stdout")?;
            out.flush().context("writing the archive to stdout")?;
        }
        Some(path) => {
            // Written beside the destination and renamed: no half archive on error.
            let file_name = path.file_name().map(|n| n.to_string_lossy().into_owned());
            let tmp = path.with_file_name(format!(
                ".{}.kiln-tmp-{}",
                file_name.unwrap_or_else(|| "archive".into()),
                std::process::id()
            ));
            let result = write_file(&store, &items, &tmp)
                .and_then(|()| std::fs::rename(&tmp, &path).map_err(Into::into));
            if let Err(e) = result {
                let _ = std::fs::remove_file(&tmp);
                return Err(e.context(format!("writing {}", path.display())));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn write_file(
    store: &kiln_store::Store,
    items: &[SaveItem],
    tmp: &std::path::Path,
) -> anyhow::Result<()> {
    let f = std::fs::File::create(tmp)?;
    let mut out = std::io::BufWriter::new(f);
    save_images(store, items, &mut out)?;
    let f = out.into_inner().map_err(|e| e.into_error())?;
    f.sync_all()?;
    Ok(())
}
