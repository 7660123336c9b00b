//! Throughput of the layer pipeline on the Debian root filesystem: extract,
//! diff (upper walk and tree compare), gzip and zstd. Prints numbers for
//! docs/layers.md; asserts only correctness. Run with
//! `sudo cargo bench -p kiln-fs --bench layer_throughput`.

use std::io::Read;
use std::time::Instant;

use kiln_fs::layer::LayerOptions;
use kiln_fs::{apply_layer_with, write_layer_from_compare, write_layer_from_upper, ApplyMode};
use kiln_oci::compression::{compress, Compression};

fn mbps(bytes: u64, t: Instant) -> String {
    let s = t.elapsed().as_secs_f64();
    format!("{:.2}s, {:.0} MB/s", s, bytes as f64 / 1e6 / s)
}

fn main() {
    if !kiln_testkit::require_base_images() {
        return;
    }
    let mut data = Vec::new();
    std::fs::File::open(kiln_testkit::debian_rootfs_tar())
        .unwrap()
        .read_to_end(&mut data)
        .unwrap();
    let n = data.len() as u64;
    let dir = kiln_testkit::tempdir();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    std::fs::create_dir(&a).unwrap();
    std::fs::create_dir(&b).unwrap();

    let t = Instant::now();
    let stats = apply_layer_with(&a, &data[..], ApplyMode::Merge).unwrap();
    eprintln!(
        "extract {} entries, {} MB: {}",
        stats.entries,
        n / 1_000_000,
        mbps(n, t)
    );

    let t = Instant::now();
    let mut tar = Vec::with_capacity(data.len());
    let info = write_layer_from_upper(&a, &mut tar, &LayerOptions::default()).unwrap();
    eprintln!(
        "diff (upper walk) -> {} entries: {}",
        info.entries,
        mbps(info.size, t)
    );

    let t = Instant::now();
    let info = write_layer_from_compare(&b, &a, &mut Vec::new(), &LayerOptions::default()).unwrap();
    eprintln!("diff (compare, all new): {}", mbps(info.size, t));

    apply_layer_with(&b, &tar[..], ApplyMode::Merge).unwrap();
    let t = Instant::now();
    let info = write_layer_from_compare(&b, &a, &mut Vec::new(), &LayerOptions::default()).unwrap();
    eprintln!(
        "diff (compare, identical trees) -> {} entries: {:.2}s",
        info.entries,
        t.elapsed().as_secs_f64()
    );

    for c in [Compression::Gzip, Compression::Zstd] {
        let t = Instant::now();
        let mut out = Vec::new();
        let (_, size) = compress(&tar[..], &mut out, c).unwrap();
        eprintln!(
            "{c:?}: {} -> {} MB: {}",
            tar.len() / 1_000_000,
            size / 1_000_000,
            mbps(tar.len() as u64, t)
        );
    }
}
