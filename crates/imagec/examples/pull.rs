//! Pulls one image and prints how long it took: the pull benchmark.
//!
//! ```text
//! tests/fixtures/registry.sh start /tmp/vic-reg --big
//! cargo run --release -p imagec --example pull -- 127.0.0.1:PORT/big:latest [STORE_DIR] [linux/arm64]
//! ```
//! Without STORE_DIR a fresh temporary store is used (a cold pull).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use imagec::pull::{Platform, Progress, Puller, RegistryOptions};
use imagec::reference::Reference;
use imagec::store::ImageStore;

/// The test registries listen on loopback, without TLS.
fn loopback() -> RegistryOptions {
    RegistryOptions {
        insecure: vec!["127.0.0.0/8".into()],
        ..Default::default()
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: pull REFERENCE [STORE_DIR] [OS/ARCH]";
    let reference = Reference::parse(&args.next().ok_or_else(|| anyhow::anyhow!(usage))?)?;
    let temp = tempfile::tempdir()?;
    let root = args
        .next()
        .map_or_else(|| temp.path().to_path_buf(), Into::into);
    let platform = match args.next() {
        Some(p) => Platform::parse(&p)?,
        None => Platform::default(),
    };
    let store = ImageStore::open(&root)?;
    let bytes = AtomicU64::new(0);
    let started = Instant::now();
    let first_byte = std::sync::Mutex::new(None::<f64>);
    let progress = |p: Progress| {
        if p.status == "Downloading" {
            first_byte
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get_or_insert(started.elapsed().as_secs_f64());
        }
        if p.status == "Download complete" {
            bytes.fetch_add(1, Ordering::Relaxed);
        }
    };
    let outcome = Puller::new(loopback())
        .pull(&store, &reference, &platform, None, &progress)
        .await?;
    let secs = started.elapsed().as_secs_f64();
    let size = outcome.image.size as f64 / 1e6;
    println!("image       {}", outcome.image.id);
    println!(
        "layers      {} ({} downloaded)",
        outcome.image.layers.len(),
        bytes.load(Ordering::Relaxed)
    );
    println!("unpacked    {size:.1} MB");
    println!("total       {secs:.2} s ({:.1} MB/s unpacked)", size / secs);
    if let Some(t) = *first_byte.lock().unwrap_or_else(|e| e.into_inner()) {
        println!("first byte  {t:.3} s");
    }
    println!("up to date  {}", outcome.up_to_date);
    Ok(())
}
