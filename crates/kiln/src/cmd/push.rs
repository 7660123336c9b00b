//! `kiln push NAME [DEST]`: uploads the stored image NAME to its own
//! registry, or to DEST, printing like `docker push`.

use std::process::ExitCode;

use anyhow::Context as _;
use kiln_oci::Reference;

use super::pull::{client, Transfer, Verb};
use super::Global;

#[derive(clap::Args)]
pub struct Args {
    /// Stored image to push: NAME[:TAG]
    pub name: String,
    /// Where to push it (REGISTRY/REPOSITORY[:TAG]). Default: NAME itself.
    pub dest: Option<String>,
    /// Print only the digest at the end.
    #[arg(short, long)]
    pub quiet: bool,
}

pub fn run(global: &Global, args: Args) -> anyhow::Result<ExitCode> {
    let local = Reference::parse(&args.name)?;
    let remote = match &args.dest {
        Some(d) => Reference::parse(d)?,
        None => local.clone(),
    };
    // Built layers are kept uncompressed; the registry gets them gzipped.
    let builder = kiln_engine::Builder::open(&global.root)
        .with_context(|| format!("opening the store at {}", global.root.display()))?;
    let store = builder.store();
    let manifest =
        builder.manifest_for_push(&local.to_string(), kiln_engine::LayerCompression::Gzip)?;
    let client = client(global);
    let out = Transfer::new(Verb::Push, args.quiet);
    out.line(&format!(
        "The push refers to repository [{}]",
        remote.familiar_name()
    ));
    let digest = kiln_registry::block_on(client.push_manifest(
        store,
        &manifest,
        Some(&local),
        &remote,
        &out,
    ))?;
    out.finish();
    if args.quiet {
        println!("{digest}");
    } else {
        let size = store.blob_size(&digest)?;
        let tag = remote.tag().unwrap_or("latest");
        println!("{tag}: digest: {digest} size: {size}");
    }
    Ok(ExitCode::SUCCESS)
}
