use std::process::ExitCode;

use kiln_oci::Reference;

use super::images::open_store;
use super::Global;

#[derive(clap::Args)]
pub struct Args {
    /// Image names or ids. A name removes that name; an id removes every
    /// name of the image. Blobs are freed by `kiln prune`.
    #[arg(required = true)]
    images: Vec<String>,
}

pub fn run(global: &Global, args: Args) -> anyhow::Result<ExitCode> {
    let store = open_store(global)?;
    let mut failed = false;
    for name in &args.images {
        if let Err(e) = remove(&store, name) {
            let message = format!("removing {name}: {e:#}");
            eprintln!("error: {}", kiln_oci::escape(&message));
            failed = true;
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn remove(store: &kiln_store::Store, name: &str) -> anyhow::Result<()> {
    let entries = store.entries()?;
    if let Ok(r) = Reference::parse(name) {
        if entries.iter().any(|e| e.name.as_ref() == Some(&r)) {
            store.untag(&r)?;
            println!("Untagged: {}", r.familiar());
            return Ok(());
        }
    }
    // An id or digest: every name and unnamed entry of that image.
    let img = store.resolve(name)?;
    for e in entries {
        let hit = e.digest() == Some(img.manifest_digest)
            || img
                .index_descriptor
                .as_ref()
                .is_some_and(|i| i.digest() == e.descriptor.digest());
        if !hit {
            continue;
        }
        match e.name {
            Some(r) => {
                store.untag(&r)?;
                println!("Untagged: {}", r.familiar());
            }
            None => {
                if let Some(d) = e.digest() {
                    store.remove_unnamed(&d)?;
                }
            }
        }
    }
    println!("Deleted: {}", img.config_digest);
    Ok(())
}
